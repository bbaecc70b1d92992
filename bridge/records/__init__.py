"""Waveform records: COMTRADE event records (IEEE C37.111-2013) and HDF5 waveform captures, and the
plots drawn from a capture. Pure formats and file helpers: the session feeds them, fronts list them."""
