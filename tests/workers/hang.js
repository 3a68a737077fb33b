// A handler whose promise can never settle.
export default {
  fetch() {
    return new Promise(() => {});
  },
};
