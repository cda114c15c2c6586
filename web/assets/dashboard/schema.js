// The task types, read from the API's own OpenAPI document: each `Submit<X>` variant of
// `Submission` names its type and the model of its payload, so a new task type module shows up
// in the form with no edit here.

import { label } from "./format.js";

// [{name, summary, fields: [{key, label, type, min, max, maxLength, description, required}]}]
export function taskTypes(document) {
  const schemas = (document.components || {}).schemas || {};
  const resolve = (ref) =>
    schemas[String(ref || "").replace(/^#\/components\/schemas\//, "")] || {};
  const submission = schemas.Submission || {};
  const mapping = (submission.discriminator || {}).mapping || {};
  const variants = Object.keys(mapping).length
    ? Object.values(mapping).map(resolve)
    : (submission.oneOf || []).map((v) => (v.$ref ? resolve(v.$ref) : v));
  return variants
    .map((variant) => {
      const properties = variant.properties || {};
      const payload = resolve((properties.payload || {}).$ref);
      const required = new Set(payload.required || []);
      const fields = Object.entries(payload.properties || {}).map(([key, p]) => ({
        key,
        label: label(key),
        type: p.type || "string",
        min: p.minimum,
        max: p.maximum,
        maxLength: p.maxLength,
        description: p.description || "",
        required: required.has(key),
      }));
      return { name: (properties.type || {}).const, summary: variant.description || "", fields };
    })
    .filter((t) => t.name);
}
