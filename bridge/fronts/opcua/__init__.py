"""OPC UA front (asyncua is imported here and nowhere else)."""
