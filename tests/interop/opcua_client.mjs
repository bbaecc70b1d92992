// An independent OPC UA client (node-opcua) against the bridge: browse the OPC 34100 energy model,
// receive the alarm events through an OfType(AlarmConditionType) filter, refresh and acknowledge a
// condition instance. Prints one JSON object; the Python test checks it.
import {
  AttributeIds,
  ClientMonitoredItem,
  DataType,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  UserTokenType,
  constructEventFilter,
  makeBrowsePath,
  ofType,
} from "node-opcua-client";

const [endpoint, user, password, pkiDir] = process.argv.slice(2);
const out = {};
const client = OPCUAClient.create({
  applicationName: "openstrom-interop",
  applicationUri: "urn:openstrom:interop:node-opcua",
  securityMode: MessageSecurityMode.SignAndEncrypt,
  securityPolicy: SecurityPolicy.Basic256Sha256,
  endpointMustExist: false,
  connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  clientCertificateManager: undefined,
  certificateFile: undefined,
});
const timer = setTimeout(() => {
  console.log(JSON.stringify({ ...out, error: "timed out" }));
  process.exit(2);
}, 40000);

async function nodeOf(session, path) {
  const r = await session.translateBrowsePath(makeBrowsePath("RootFolder", path));
  if (!r.targets || r.targets.length === 0) throw new Error(`no node at ${path}: ${r.statusCode.name}`);
  return r.targets[0].targetId;
}

try {
  await client.connect(endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName: user, password });
  const ns = await session.readNamespaceArray();
  const idx = ns.indexOf("urn:openstrom:bridge");
  const ecm = ns.indexOf("http://opcfoundation.org/UA/ECM/");
  const circuit = `/Objects/${idx}:OpenStrom/${idx}:board1/${idx}:Circuits/${idx}:Circuit01`;
  const energy = await nodeOf(session, `${circuit}/${idx}:Energy`);
  const power = await nodeOf(session, `${circuit}/${idx}:Energy/${ecm}:AcActivePowerTotal`);
  const mid = await nodeOf(session, `${circuit}/${idx}:Energy/${ecm}:AcActivePowerTotal/${ecm}:MeasurementID`);
  const [pv, mv] = await session.read([
    { nodeId: power, attributeId: AttributeIds.Value },
    { nodeId: mid, attributeId: AttributeIds.Value },
  ]);
  out.power = pv.value.value;
  out.measurementId = mv.value.value;
  const refs = await session.browse({ nodeId: energy, referenceTypeId: "HasTypeDefinition", browseDirection: 0 });
  out.energyType = refs.references[0].nodeId.toString().replace(`ns=${ecm};`, "ecm;");

  const sub = await session.createSubscription2({
    requestedPublishingInterval: 100,
    requestedLifetimeCount: 600,
    requestedMaxKeepAliveCount: 20,
    publishingEnabled: true,
  });
  const fields = ["EventType", "SourceName", "Message", "Severity", "ConditionName", "Retain", "AckedState.Id"];
  const filter = constructEventFilter(fields, ofType("AlarmConditionType"));
  const item = ClientMonitoredItem.create(
    sub,
    { nodeId: await nodeOf(session, circuit), attributeId: AttributeIds.EventNotifier },
    { samplingInterval: 0, filter, queueSize: 100, discardOldest: true },
    TimestampsToReturn.Neither,
  );
  out.events = [];
  item.on("changed", (values) => {
    out.events.push({
      eventType: values[0].value.toString(),
      conditionName: values[4].value,
      severity: values[3].value,
      retain: values[5].value,
    });
  });
  await new Promise((r) => setTimeout(r, 500));
  const refresh = await session.call({
    objectId: "ns=0;i=2253",
    methodId: "ns=0;i=3875",
    inputArguments: [{ dataType: DataType.UInt32, value: sub.subscriptionId }],
  });
  out.refreshStatus = refresh.statusCode.name;
  for (let k = 0; k < 50 && !out.events.some((e) => e.conditionName === "dip"); k++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const dip = await nodeOf(session, `${circuit}/${idx}:Alarms/${idx}:dip`);
  const eventId = (await session.read({ nodeId: await nodeOf(session, `${circuit}/${idx}:Alarms/${idx}:dip/0:EventId`) })).value.value;
  const ack = await session.call({
    objectId: dip,
    methodId: "ns=0;i=9111",
    inputArguments: [
      { dataType: DataType.ByteString, value: eventId },
      { dataType: DataType.LocalizedText, value: { text: "seen from node-opcua" } },
    ],
  });
  out.ackStatus = ack.statusCode.name;
  const acked = await nodeOf(session, `${circuit}/${idx}:Alarms/${idx}:dip/0:AckedState/0:Id`);
  out.ackedAfter = (await session.read({ nodeId: acked })).value.value;
  await sub.terminate();
  await session.close();
  await client.disconnect();
  clearTimeout(timer);
  console.log(JSON.stringify(out));
} catch (err) {
  clearTimeout(timer);
  console.log(JSON.stringify({ ...out, error: String(err && err.stack ? err.stack : err) }));
  process.exit(1);
}
