// An OpenID Connect server with an interactive login and consent page
// (oidc-provider's development interactions), for regauth's browser test.
//
//   node idp.mjs PORT REDIRECT_URI CLIENT_SECRET
//
// Accounts and their groups are below; the login page takes any password
// (the provider's own development login), which is enough to drive a real
// authorization code flow with PKCE in a real browser. Sign-ins get refresh
// tokens, and lines on stdin change accounts as an administrator would:
//
//   disable NAME          the account is gone: its refresh tokens stop working
//   groups NAME a,b       its groups from now on (none: `groups NAME -`)
//
// each answered with `ok` on stdout.
import Provider from 'oidc-provider';
import readline from 'node:readline';

const [port, redirectUri, clientSecret] = process.argv.slice(2);
const accounts = {
  dana: { groups: ['platform'], email: 'dana@example.com' },
  erin: { groups: [], email: 'erin@example.com' },
};

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'regauth',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'], email: ['email'] },
  cookies: { keys: ['regauth-test-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AuthorizationCode: 60, AccessToken: 600, IdToken: 600, RefreshToken: 3600 },
  // a refresh token for every sign-in of a client that may refresh (as
  // Keycloak and Entra give one), not only with prompt=consent
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => {
    const account = accounts[id];
    if (!account || account.disabled) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: id, groups: account.groups, email: account.email }),
    };
  },
});
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, name, value] = line.trim().split(/\s+/);
  const account = accounts[name];
  if (command === 'disable' && account) account.disabled = true;
  else if (command === 'groups' && account) account.groups = value && value !== '-' ? value.split(',') : [];
  else { console.log(`unknown: ${line}`); return; }
  console.log('ok');
});
