// A tiny assertion library for isobar's JS API tests. Each test file is a module worker whose
// fetch handler runs its checks and answers "ok", or throws with what went wrong.
export function eq(actual, expected, what = "value") {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}
export function ok(condition, what) {
  if (!condition) throw new Error(`assertion failed: ${what}`);
}
export function throws(fn, errorClass, what) {
  try {
    fn();
  } catch (e) {
    if (errorClass && !(e instanceof errorClass)) throw new Error(`${what}: threw ${e} instead of ${errorClass.name}`);
    return e;
  }
  throw new Error(`${what}: did not throw`);
}
export async function rejects(promise, errorClass, what) {
  try {
    await promise;
  } catch (e) {
    if (errorClass && !(e instanceof errorClass)) throw new Error(`${what}: rejected with ${e} instead of ${errorClass.name}`);
    return e;
  }
  throw new Error(`${what}: did not reject`);
}
