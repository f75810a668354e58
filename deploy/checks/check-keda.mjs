// Validates every KEDA ScaledObject in a rendered manifest against the KEDA model:
// kubectl kustomize ../../k8s/base | node check-keda.mjs
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const docs = parseAllDocuments(readFileSync(0, "utf8")).map((d) => d.toJS()).filter((d) => d?.kind === "ScaledObject");
if (docs.length === 0) throw new Error("no ScaledObject in the input");
for (const doc of docs) {
  new ScaledObject(doc).validate();
  console.log(`ScaledObject ${doc.metadata.name}: valid`);
}
