// Shows a var and a secret from `env`: both reach the script, though the admin API shows only
// the secret's name.
export default {
  fetch(request, env) {
    return new Response(`${env.GREETING} ${env.API_KEY}\n`);
  },
};
