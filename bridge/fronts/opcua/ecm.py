"""OPC 34100 Energy Consumption Management: every circuit as an EnergyMeasurementType object with its
measurements as EnergyMeasurementValueType variables carrying the standard MeasurementIDs, units and
accuracy, and the IEnergyProfileE2Type interface.

The ECM and IA (OPC 10000-200) type nodes the model needs are built here with their standard NodeIds
and BrowseNames (no NodeSet file is loaded). Deliberate limits:

- E2 is the profile that fits a single-phase circuit fully (total active power, active energy import
  and export). E3 is built on three-phase AcPeDataType structures (L1, L2, L3); a circuit has one
  phase, so the E3 quantities are given as their single-phase MeasurementIDs (AcVoltageL1N, AcCurrentL1,
  AcPowerFactorL1 ...) and the high-precision energies instead of claiming the interface.
- Reactive power is left out: OPC 34100 distinguishes Qn and Qtot, the bridge measures the fundamental
  Q1 (see Measurements); the reactive energies (inductive as import, capacitive as export) are given.
- ResetStatistics and StartTime (optional) are not offered: the energies are the meter's persisted
  odometers, which no client may reset.
- ApplicationTag (mandatory, writable in the standard) holds the circuit's name from the configuration
  and is read-only here: every write over OPC UA goes through the command path, and this tag is set in
  the configuration file.
- AccuracyClass is ACCURACY_DOMAIN_IEC (IEC 61557-12) class 0.5: what the measurement chain meets
  against analytic vectors; the device's sensors decide the installed meter's class.
"""

from __future__ import annotations

from typing import Any

from asyncua import Server, ua

from .batch import NodeBatch
from .catalogue import ECM_MEASUREMENTS, UNITS

ECM_URI = "http://opcfoundation.org/UA/ECM/"
IA_URI = "http://opcfoundation.org/UA/IA/"
OID = ua.ObjectIds
_V = ua.VariantType
# standard NodeIds (numeric identifiers in their namespace)
ENERGY_MEASUREMENT_TYPE = 1006
ENERGY_MEASUREMENT_VALUE_TYPE = 2002
ACCURACY_DOMAIN_TYPE = 1014
ENERGY_PROFILE_E2 = 1009
ACCURACY_DOMAINS = 5009
ACCURACY_DOMAIN_IEC = 5027
IA_STATISTICS_TYPE = 1011
IA_HAS_STATISTIC_COMPONENT = 4002
IEC_CLASSES = ("reserved", "0,02", "0,05", "0,1", "0,2", "0,5", "1", "1,5", "2", "2,5", "3", "5")
ACCURACY_CLASS = 5  # "0,5"
RESOURCE_ELECTRICITY = 1  # the Resource OPC 34100's profiles give electrical measurements


def _eu(unit: str) -> ua.EUInformation:
    u = UNITS[unit]
    return ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=u.unit_id,
        DisplayName=ua.LocalizedText(u.symbol),
        Description=ua.LocalizedText(u.name),
    )


def _enum_values(names: list[tuple[int, str, str]]) -> list[ua.EnumValueType]:
    return [
        ua.EnumValueType(Value=v, DisplayName=ua.LocalizedText(d), Description=ua.LocalizedText(t)) for v, d, t in names
    ]


class EnergyModel:
    """The ECM types (once per server) and each circuit's EnergyMeasurementType object."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.ecm = 0
        self.ia = 0

    def nid(self, i: int) -> ua.NodeId:
        return ua.NodeId(i, self.ecm)

    async def build_types(self) -> None:
        s = self.server
        self.ia = await s.register_namespace(IA_URI)
        self.ecm = await s.register_namespace(ECM_URI)
        ecm, ia = self.ecm, self.ia
        # IA: the statistics interface and its reference type
        interface = s.get_node(OID.BaseInterfaceType)
        stats = await interface.add_object_type(
            ua.NodeId(IA_STATISTICS_TYPE, ia), ua.QualifiedName("IStatisticsType", ia)
        )
        await stats.write_attribute(ua.AttributeIds.IsAbstract, ua.DataValue(ua.Variant(True, _V.Boolean)))
        has_component = s.get_node(OID.HasComponent)
        await has_component.add_reference_type(
            ua.NodeId(IA_HAS_STATISTIC_COMPONENT, ia), ua.QualifiedName("HasStatisticComponent", ia)
        )
        # ECM: the value type, the measurement type, the E2 interface, the accuracy domains
        base_var = s.get_node(OID.BaseDataVariableType)
        value_type = await base_var.add_variable_type(
            self.nid(ENERGY_MEASUREMENT_VALUE_TYPE),
            ua.QualifiedName("EnergyMeasurementValueType", ecm),
            ua.VariantType.Variant,
        )
        for name, vtype in (("AccuracyDomain", _V.NodeId), ("MeasurementID", _V.UInt16)):
            p = await value_type.add_property(
                ua.NodeId(f"EnergyMeasurementValueType.{name}", ecm),
                ua.QualifiedName(name, ecm),
                ua.get_default_value(vtype),
                vtype,
            )
            await p.set_modelling_rule(name == "AccuracyDomain")
        measurement = await s.nodes.base_object_type.add_object_type(
            self.nid(ENERGY_MEASUREMENT_TYPE), ua.QualifiedName("EnergyMeasurementType", ecm)
        )
        tag = await measurement.add_property(
            ua.NodeId("EnergyMeasurementType.ApplicationTag", ecm), ua.QualifiedName("ApplicationTag", ecm), ""
        )
        await tag.set_modelling_rule(True)
        await measurement.add_reference(
            ua.NodeId(IA_STATISTICS_TYPE, ia), OID.HasInterface, forward=True, bidirectional=False
        )
        e2 = await interface.add_object_type(self.nid(ENERGY_PROFILE_E2), ua.QualifiedName("IEnergyProfileE2Type", ecm))
        await e2.write_attribute(ua.AttributeIds.IsAbstract, ua.DataValue(ua.Variant(True, _V.Boolean)))
        domain_type = await s.nodes.base_object_type.add_object_type(
            self.nid(ACCURACY_DOMAIN_TYPE), ua.QualifiedName("AccuracyDomainType", ecm)
        )
        capabilities = s.get_node(OID.Server_ServerCapabilities)
        domains = await capabilities.add_folder(self.nid(ACCURACY_DOMAINS), ua.QualifiedName("AccuracyDomains", ecm))
        iec = await domains.add_object(
            self.nid(ACCURACY_DOMAIN_IEC), ua.QualifiedName("ACCURACY_DOMAIN_IEC", ecm), objecttype=domain_type.nodeid
        )
        await iec.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(
                ua.Variant(ua.LocalizedText("The accuracy is given according to IEC 61557-12."), _V.LocalizedText)
            ),
        )
        classes = [(k, f"ACCURACY_CLASS_{k}", text) for k, text in enumerate(IEC_CLASSES)]
        self.class_values = await iec.add_property(
            ua.NodeId("ACCURACY_DOMAIN_IEC.EnumValues", ecm), ua.QualifiedName("EnumValues", 0), _enum_values(classes)
        )

    def build_circuit(
        self, node_mgt: Any, parent: ua.NodeId, prefix: str, own_ns: int, tag: str
    ) -> dict[str, ua.NodeId]:
        """The circuit's ``Energy`` object (EnergyMeasurementType) and its values; returns the value
        nodes by browse name."""
        ecm = self.ecm
        batch = NodeBatch(own_ns)
        obj = ua.NodeId(f"{prefix}.Energy", own_ns)
        batch.obj(obj, parent, "Energy", self.nid(ENERGY_MEASUREMENT_TYPE), ns=own_ns)
        batch.var(ua.NodeId(f"{prefix}.Energy.ApplicationTag", own_ns), obj, "ApplicationTag", tag, _V.String, ns=ecm)
        batch.ref(obj, OID.HasInterface, self.nid(ENERGY_PROFILE_E2), ua.NodeClass.ObjectType)
        out: dict[str, ua.NodeId] = {}
        for m in ECM_MEASUREMENTS:
            base = f"{prefix}.Energy.{m.browse_name}"
            var = ua.NodeId(base, own_ns)
            out[m.browse_name] = var
            batch.var(
                var,
                obj,
                m.browse_name,
                0.0,
                getattr(_V, m.vtype),
                prop=False,
                type_id=self.nid(ENERGY_MEASUREMENT_VALUE_TYPE),
                ns=ecm,
            )
            if m.statistic:  # a counter: reached by HasStatisticComponent as the standard's profiles do
                batch.nodes[-1].ReferenceTypeId = ua.NodeId(IA_HAS_STATISTIC_COMPONENT, self.ia)
            batch.var(
                ua.NodeId(f"{base}.AccuracyDomain", own_ns),
                var,
                "AccuracyDomain",
                self.nid(ACCURACY_DOMAIN_IEC),
                _V.NodeId,
                ns=ecm,
            )
            batch.var(
                ua.NodeId(f"{base}.MeasurementID", own_ns), var, "MeasurementID", m.measurement_id, _V.UInt16, ns=ecm
            )
            batch.var(
                ua.NodeId(f"{base}.EngineeringUnits", own_ns),
                var,
                "EngineeringUnits",
                _eu(m.unit),
                _V.ExtensionObject,
                data_type=OID.EUInformation,
            )
            for name, value, text in (
                ("AccuracyClass", ACCURACY_CLASS, IEC_CLASSES[ACCURACY_CLASS]),
                ("Resource", RESOURCE_ELECTRICITY, "Electricity"),
            ):
                state = ua.NodeId(f"{base}.{name}", own_ns)
                batch.var(
                    state, var, name, value, _V.UInt32, prop=False, type_id=OID.MultiStateValueDiscreteType, ns=ecm
                )
                batch.var(
                    ua.NodeId(f"{base}.{name}.ValueAsText", own_ns),
                    state,
                    "ValueAsText",
                    ua.LocalizedText(text),
                    _V.LocalizedText,
                )
                if name == "AccuracyClass":  # the accuracy domain's own EnumValues (OPC 34100 6.2.4)
                    batch.ref(state, OID.HasProperty, self.class_values.nodeid, ua.NodeClass.Variable)
                else:
                    batch.var(
                        ua.NodeId(f"{base}.{name}.EnumValues", own_ns),
                        state,
                        "EnumValues",
                        _enum_values([(RESOURCE_ELECTRICITY, "Electricity", "electrical energy")]),
                        _V.ExtensionObject,
                        data_type=OID.EnumValueType,
                    )
        batch.apply(node_mgt)
        return out
