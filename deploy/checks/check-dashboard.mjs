// Type-checks a Grafana dashboard JSON against the `Dashboard` type of @grafana/schema, with excess-property
// checks: node check-dashboard.mjs ../grafana/dashboards/ragsync.json
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dashboard = readFileSync(process.argv[2], "utf8");
const dir = mkdtempSync(join(here, ".check-"));
const source = join(dir, "dashboard.ts");
writeFileSync(source, `import type { Dashboard } from "@grafana/schema";\nexport const dashboard: Dashboard = ${dashboard};\n`);
try {
  execFileSync(join(here, "node_modules", ".bin", "tsc"),
    ["--noEmit", "--strict", "--skipLibCheck", "--moduleResolution", "bundler", "--module", "esnext", "--target", "es2022", source],
    { stdio: "inherit", cwd: here });
  console.log(`${process.argv[2]}: a valid Grafana Dashboard`);
} finally {
  execFileSync("rm", ["-rf", dir]);
}
