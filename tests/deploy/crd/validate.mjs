// Validates prometheus-operator objects (JSON, one array on stdin) against the CRD schemas
// published in @kubernetes-models/prometheus-operator. Prints one JSON line per object:
// {"kind", "name", "errors": [...]} and exits 1 when any object is invalid, 2 on an unknown kind.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const MODELS = { ServiceMonitor, PodMonitor, PrometheusRule };
const docs = JSON.parse(readFileSync(0, "utf8"));
let code = 0;
for (const doc of docs) {
  const Model = MODELS[doc.kind];
  const name = doc.metadata?.name;
  if (Model === undefined || doc.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(JSON.stringify({ kind: doc.kind, name, errors: ["no schema for this kind"] }));
    code = 2;
    continue;
  }
  let errors = [];
  try {
    new Model(doc).validate();
  } catch (exc) {
    errors = exc.errors ? exc.errors.map((e) => `${e.instancePath} ${e.message}`) : [String(exc)];
    code = Math.max(code, 1);
  }
  console.log(JSON.stringify({ kind: doc.kind, name, errors }));
}
process.exit(code);
