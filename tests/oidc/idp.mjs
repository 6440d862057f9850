// A real OAuth2/OIDC server (oauth2-mock-server) shaped like Keycloak for
// regauth's tests: the password grant checks realm.json's users and emits
// Keycloak's claims (preferred_username, groups with leading "/",
// realm_access.roles, resource_access.<client>.roles); client_credentials
// emits each client's claims. "rotate" on stdin adds a new signing key.
//
//   node idp.mjs PORT realm.json
import { OAuth2Server } from 'oauth2-mock-server';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import readline from 'node:readline';

const [port, realmFile] = process.argv.slice(2);
const realm = JSON.parse(readFileSync(realmFile, 'utf8'));
const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');

function clientOf(req) {
  const auth = req.headers.authorization;
  if (auth && auth.startsWith('Basic ')) {
    const [id, secret] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
    return { id: decodeURIComponent(id), secret: decodeURIComponent(secret ?? '') };
  }
  return { id: req.body.client_id, secret: req.body.client_secret };
}

server.service.on('beforeTokenSigning', (token, req) => {
  const body = req.body;
  const now = Math.floor(Date.now() / 1000);
  token.payload.aud = realm.audience;
  token.payload.typ = 'Bearer';
  if (body.grant_type === 'password') {
    const user = realm.users[body.username];
    if (!user) return;
    const client = clientOf(req).id;
    Object.assign(token.payload, {
      sub: `user-${body.username}`,
      preferred_username: body.username,
      azp: client,
      groups: user.groups,
      realm_access: { roles: user.realm_roles },
      resource_access: { [client]: { roles: user.client_roles } },
    });
  } else if (body.grant_type === 'client_credentials') {
    const client = realm.clients[clientOf(req).id];
    if (!client) return;
    Object.assign(token.payload, client.claims, { azp: clientOf(req).id });
    if (client.audience) token.payload.aud = client.audience;
    if (client.expired) {
      token.payload.iat = now - 7200;
      token.payload.nbf = now - 7200;
      token.payload.exp = now - 3600;
    }
  }
});

server.service.on('beforeResponse', (response, req) => {
  const body = req.body;
  const client = clientOf(req);
  const invalid = (status, error, description) => {
    response.statusCode = status;
    response.body = { error, error_description: description };
  };
  if (body.grant_type === 'password') {
    const known = realm.clients[client.id] ?? (client.id === 'registry' ? { secret: 'registry-secret' } : undefined);
    if (!known || known.secret !== client.secret) return invalid(401, 'invalid_client', 'Invalid client credentials');
    const user = realm.users[body.username];
    if (!user || user.password !== body.password) return invalid(401, 'invalid_grant', 'Invalid user credentials');
  } else if (body.grant_type === 'client_credentials') {
    const known = realm.clients[client.id];
    if (!known || known.secret !== client.secret) return invalid(401, 'invalid_client', 'Invalid client credentials');
  }
});

// RFC 7662: opaque tokens from realm.json are active, everything else not;
// only the registry client may introspect.
server.service.on('beforeIntrospect', (response, req) => {
  const client = clientOf(req);
  if (client.id !== 'registry' || client.secret !== 'registry-secret') {
    response.statusCode = 401;
    response.body = { error: 'invalid_client' };
    return;
  }
  const found = (realm.opaque_tokens ?? {})[req.body.token];
  response.body = found ? { ...found, iss: server.issuer.url } : { active: false };
});

// oauth2-mock-server parses no body on /introspect: a thin front parses the
// form first, then hands every request to the mock's own handler.
server.issuer.url = `http://localhost:${port}`;
const front = http.createServer((req, res) => {
  if (req.method !== 'POST' || !req.url.startsWith('/introspect')) {
    return server.service.requestHandler(req, res);
  }
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    req.body = Object.fromEntries(new URLSearchParams(body));
    server.service.requestHandler(req, res);
  });
});
await new Promise((resolve) => front.listen(Number(port), '127.0.0.1', resolve));
console.log(`READY ${server.issuer.url}`);

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (line.trim() === 'rotate') {
    const key = await server.issuer.keys.generate('RS256');
    console.log(`ROTATED ${key.kid}`);
  }
});
