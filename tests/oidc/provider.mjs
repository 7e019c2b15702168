// A real OpenID Connect provider for tests/test_sso.py: node-oidc-provider (the certified
// implementation behind many identity services) over HTTPS, with one confidential client that
// must use PKCE, and accounts found by login name, each with a `groups` claim.
//
//   node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG.json: {"port", "issuer", "cert", "key" (PEM files), "client_id", "client_secret",
// "redirect_uris", "post_logout_redirect_uris", "accounts": {"LOGIN": {claims...}}} (accounts read
// again at each sign-in). Prints "ready ISSUER" when it listens. RP-initiated logout is on (the
// package's default): /session/end, with its own "sign out?" confirmation page.
// The sign-in page is a plain form (label "Username", button "Sign in"); there is no password,
// since the test is about what the console does with the provider's answer.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// Read again at every sign-in, so that a test can change someone's groups at the provider.
const accounts = () => JSON.parse(readFileSync(process.argv[2], 'utf8')).accounts;

// A signing key of this run's own (the package's built-in development key is public).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-run', use: 'sig', alg: 'RS256' };

const provider = new Provider(config.issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: config.redirect_uris,
    post_logout_redirect_uris: config.post_logout_redirect_uris || [],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true }, // also for this confidential client (S256 is the only method)
  jwks: { keys: [jwk] },
  cookies: { keys: ['a-cookie-key-for-this-test-provider-only'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  // The default (conformIdTokenClaims: true) puts the scopes' claims in UserInfo only, not in
  // the ID token: the console must then ask UserInfo, as some real providers need.
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const claims = accounts()[sub];
    if (!claims) return undefined;
    return { accountId: sub, async claims() { return { sub, ...claims }; } };
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body><h1>Test identity provider</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label for="login">Username</label> <input id="login" name="login" autofocus>
<button type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

// The sign-in interaction: the name alone signs in (a known account), and the console's
// requested scopes are granted at once (a first-party client: no consent screen).
async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(uid));
    return;
  }
  const login = (await readForm(req)).get('login') || '';
  if (!accounts()[login]) {
    res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(uid, `No such user: ${login}`));
    return;
  }
  const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: login }, consent: { grantId } },
    { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = createServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) }, (req, res) => {
  const match = /^\/interaction\/([\w-]+)$/.exec(new URL(req.url, config.issuer).pathname);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1]).catch((err) => {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${err.message}`);
  });
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
server.listen(config.port, new URL(config.issuer).hostname, () => console.log(`ready ${config.issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
