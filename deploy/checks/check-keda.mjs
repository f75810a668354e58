// Validates every KEDA ScaledObject and TriggerAuthentication in a rendered manifest against the KEDA model, and
// checks that each trigger's authenticationRef names a TriggerAuthentication of the same manifest:
// kubectl kustomize ../../k8s/base | node check-keda.mjs
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const docs = parseAllDocuments(readFileSync(0, "utf8")).map((d) => d.toJS()).filter(Boolean);
const scaled = docs.filter((d) => d.kind === "ScaledObject");
const auths = docs.filter((d) => d.kind === "TriggerAuthentication");
if (scaled.length === 0) throw new Error("no ScaledObject in the input");
for (const doc of auths) {
  new TriggerAuthentication(doc).validate();
  console.log(`TriggerAuthentication ${doc.metadata.name}: valid`);
}
const authNames = new Set(auths.map((d) => d.metadata.name));
for (const doc of scaled) {
  new ScaledObject(doc).validate();
  for (const trigger of doc.spec.triggers) {
    const ref = trigger.authenticationRef;
    if (ref && (ref.kind ?? "TriggerAuthentication") === "TriggerAuthentication" && !authNames.has(ref.name)) {
      throw new Error(`ScaledObject ${doc.metadata.name}: authenticationRef ${ref.name} is not in the manifest`);
    }
  }
  console.log(`ScaledObject ${doc.metadata.name}: valid`);
}
