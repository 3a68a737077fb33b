// Runs WPT's urlpatterntestdata.json (sent as the request body by urlpattern/mod.rs) through
// URLPattern the way WPT's urlpattern.any.js does, and answers {passed, total, failures}.
const COMPONENTS = ["protocol", "username", "password", "hostname", "port", "pathname", "search", "hash"];

function check(entry) {
  let pattern;
  try {
    pattern = new URLPattern(...entry.pattern);
  } catch (e) {
    if (entry.expected_obj === "error") return e instanceof TypeError ? null : `constructor threw ${e}, not a TypeError`;
    return `constructor threw ${e}`;
  }
  if (entry.expected_obj === "error") return "constructor did not throw";
  if (entry.expected_obj) {
    // Only the components the case lists (WPT derives the others from the constructor's input).
    for (const key of Object.keys(entry.expected_obj)) {
      if (pattern[key] !== entry.expected_obj[key]) return `${key} is ${JSON.stringify(pattern[key])}, expected ${JSON.stringify(entry.expected_obj[key])}`;
    }
  }
  if (entry.expected_match === "error") {
    try {
      pattern.test(...entry.inputs);
    } catch (e) {
      return e instanceof TypeError ? null : `test() threw ${e}, not a TypeError`;
    }
    return "test() did not throw";
  }
  const result = pattern.exec(...entry.inputs);
  const matched = pattern.test(...entry.inputs);
  if (matched !== !!entry.expected_match) return `test() gave ${matched}`;
  if (!entry.expected_match) return result === null ? null : "exec() matched";
  if (result === null) return "exec() gave null";
  const expectedInputs = entry.expected_match.inputs ?? entry.inputs;
  // Compared as WPT's assert_object_equals does: member order does not matter.
  const canonical = (value) => JSON.stringify(value, (key, v) => v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v);
  if (canonical(result.inputs) !== canonical(expectedInputs)) return `inputs ${JSON.stringify(result.inputs)}`;
  for (const key of COMPONENTS) {
    let expected = entry.expected_match[key];
    if (expected === undefined) {
      // An unlisted component is the empty input matched by the default "*" pattern.
      const empty = entry.exactly_empty_components?.includes(key);
      expected = { input: "", groups: empty ? {} : { "0": "" } };
    }
    const groups = {};
    for (const name of Object.keys(expected.groups)) groups[name] = expected.groups[name] ?? undefined;
    if (result[key].input !== expected.input) return `${key}.input ${JSON.stringify(result[key].input)} != ${JSON.stringify(expected.input)}`;
    const got = result[key].groups;
    const names = new Set([...Object.keys(got), ...Object.keys(groups)]);
    for (const name of names) {
      if (got[name] !== groups[name]) return `${key}.groups.${name} ${JSON.stringify(got[name])} != ${JSON.stringify(groups[name])}`;
    }
  }
  return null;
}

export default {
  async fetch(request) {
    const entries = await request.json();
    let passed = 0;
    const failures = [];
    for (const entry of entries) {
      let failure;
      try {
        failure = check(entry);
      } catch (e) {
        failure = `threw ${e}`;
      }
      if (failure === null) passed++;
      else failures.push(`${JSON.stringify(entry.pattern)} ${JSON.stringify(entry.inputs)}: ${failure}`);
    }
    return new Response(JSON.stringify({ passed, total: entries.length, failures }));
  },
};
