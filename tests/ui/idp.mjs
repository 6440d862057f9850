// An OpenID Connect server with an interactive login and consent page
// (oidc-provider's development interactions), for regauth's browser test.
//
//   node idp.mjs PORT REDIRECT_URI CLIENT_SECRET
//
// Accounts and their groups are below; the login page takes any password
// (the provider's own development login), which is enough to drive a real
// authorization code flow with PKCE in a real browser.
import Provider from 'oidc-provider';

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
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], profile: ['preferred_username', 'groups'], email: ['email'] },
  cookies: { keys: ['regauth-test-only-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AuthorizationCode: 60, AccessToken: 600, IdToken: 600 },
  findAccount: async (ctx, id) => {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: id, groups: account.groups, email: account.email }),
    };
  },
});
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
