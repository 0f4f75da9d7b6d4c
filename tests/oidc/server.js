// Real OpenID Connect providers (panva/oidc-provider v8) for the broker's end-to-end tests.
//
// One node process serves several independent providers, each on its own 127.0.0.1 port, with
// fresh signing keys (RS256 + ES256) generated at start-up. Configuration is JSON, given in the
// OIDC_TEST_CONFIG environment variable or as the first argv (see tests/support/oidc_server.py,
// which builds it):
//
//   {
//     "host": "127.0.0.1",                       // optional, default 127.0.0.1
//     "accounts": {                                // shared by every provider unless overridden
//       "alice": {"password": "alice-pw", "sub": "alice",   // sub defaults to the username
//                 "claims": {"email": "alice@example.com", "email_verified": true,
//                            "groups": ["admins", "dev"], "hd": "example.com", "name": "Alice"},
//                 "amr": ["pwd", "otp"]}              // optional: how its login authenticates
//     },
//     "providers": [
//       {"name": "corp", "port": 0,                // 0 (default): any free port, reported in READY
//        "id_token_signed_response_alg": "RS256",  // default for this provider's clients
//        "consent": "auto",                        // "auto" (default) or "form" (render a form)
//        "accounts": {...},                        // optional, replaces the shared accounts
//        "openid_claims": ["amr", "auth_time"],    // optional: also in every ID token
//        "clients": [{"client_id": "broker", "client_secret": "s3cret",
//                     "redirect_uris": ["http://127.0.0.1:8080/callback/corp"]}]}
//     ]
//   }
//
// Client entries are oidc-provider client metadata (backchannel_logout_uri and
// backchannel_logout_session_required included); defaults: grant_types [authorization_code],
// response_types [code], token_endpoint_auth_method client_secret_basic. Set
// "application_type": "native" to accept any port on a loopback redirect URI (RFC 8252 7.3).
//
// When every provider listens, prints one line on stdout:
//   READY {"corp": "http://127.0.0.1:PORT", "partner": "http://127.0.0.1:PORT2"}
// Logs go to stderr. Exits on SIGTERM/SIGINT, and, with OIDC_EXIT_ON_STDIN_EOF=1, when stdin
// reaches EOF (the parent died).

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

function loadConfig() {
  const raw = process.env.OIDC_TEST_CONFIG || process.argv[2];
  if (!raw) {
    throw new Error('no configuration: set OIDC_TEST_CONFIG or pass the JSON as the first argument');
  }
  return JSON.parse(raw);
}

function log(...args) {
  console.error('[oidc]', ...args);
}

function generateJwks(name) {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return {
    keys: [
      { ...rsa.export({ format: 'jwk' }), kid: `${name}-rs256`, alg: 'RS256', use: 'sig' },
      { ...ec.export({ format: 'jwk' }), kid: `${name}-es256`, alg: 'ES256', use: 'sig' },
    ],
  };
}

const escapeHtml = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage(providerName, uid, clientId, { error, login } = {}) {
  return page(`Sign in to ${providerName}`, `<p>Client <code>${escapeHtml(clientId)}</code> asks you to sign in.</p>
${error ? `<p class="error" role="alert" id="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" id="login-form" autocomplete="off">
  <label>Username <input type="text" name="login" id="login" value="${escapeHtml(login)}" required autofocus></label>
  <label>Password <input type="password" name="password" id="password" required></label>
  <button type="submit" id="submit">Sign in</button>
</form>
`);
}

function consentPage(providerName, uid, clientId, details) {
  const scopes = (details.missingOIDCScope || []).join(' ');
  const claims = (details.missingOIDCClaims || []).join(' ');
  return page(`Authorize ${clientId} at ${providerName}`, `<p>Scopes: <code>${escapeHtml(scopes)}</code></p>
<p>Claims: <code>${escapeHtml(claims)}</code></p>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm" id="consent-form">
  <input type="hidden" name="consent" value="yes">
  <button type="submit" id="submit">Continue</button>
</form>
`);
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(provider, interaction) {
  const { prompt: { details }, params, session: { accountId } } = interaction;
  let { grantId } = interaction;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const savedId = await grant.save();
  const consent = {};
  if (!grantId) {
    grantId = savedId;
    consent.grantId = grantId;
  }
  return consent;
}

function makeProvider(spec, issuer, sharedAccounts) {
  const { name } = spec;
  const accounts = spec.accounts || sharedAccounts || {};
  const bySub = new Map();
  for (const [username, account] of Object.entries(accounts)) {
    bySub.set(account.sub || username, { username, ...account });
  }
  const defaultAlg = spec.id_token_signed_response_alg || 'RS256';
  const clients = (spec.clients || []).map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: defaultAlg,
    ...client,
  }));

  const provider = new Provider(issuer, {
    clients,
    jwks: generateJwks(name),
    findAccount(ctx, sub) {
      const account = bySub.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { ...account.claims, sub };
        },
      };
    },
    claims: {
      // a provider's "openid_claims" (e.g. amr, auth_time) go into every ID token too
      openid: ['sub', ...(spec.openid_claims || [])],
      email: ['email', 'email_verified'],
      profile: ['name', 'groups', 'hd'],
      groups: ['groups'],
    },
    // Put scope-requested claims in the ID token too (not only at userinfo).
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { methods: ['S256'], required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      claimsParameter: { enabled: true },
      // OIDC Back-Channel Logout 1.0: a client that registers backchannel_logout_uri (and
      // backchannel_logout_session_required: true, for sid in ID and logout tokens) is sent a
      // logout token when the session ends at end_session_endpoint (/session/end).
      backchannelLogout: { enabled: true },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    cookies: {
      // Per-provider names: cookies do not isolate by port, and every provider lives on 127.0.0.1.
      names: {
        session: `op-${name}-session`,
        interaction: `op-${name}-interaction`,
        resume: `op-${name}-resume`,
      },
      // SameSite=None cookies need Secure in browsers; this is plain http, so use Lax.
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
      keys: [crypto.randomBytes(32).toString('hex')],
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    renderError(ctx, out, error) {
      ctx.type = 'html';
      ctx.body = page('Error', `<pre id="error">${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
      if (error && !(error.expose)) log(`${name}: error`, error);
    },
  });

  for (const event of ['server_error', 'authorization.error', 'grant.error', 'introspection.error',
    'revocation.error', 'userinfo.error', 'end_session.error', 'backchannel.error']) {
    provider.on(event, (ctx, err) => log(`${name}: ${event}:`, err?.name, err?.message,
      err?.error_description || ''));
  }
  return { provider, bySub, accounts };
}

async function handleInteraction(state, req, res, url) {
  const { provider, accounts, spec } = state;
  const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!match) {
    send(res, 404, page('Not found', ''));
    return;
  }
  const action = match[2];
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== match[1]) {
    send(res, 400, page('Error', '<p id="error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = interaction;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      send(res, 200, loginPage(spec.name, interaction.uid, params.client_id,
        { login: params.login_hint }));
      return;
    }
    if (prompt.name === 'consent') {
      if ((spec.consent || 'auto') === 'auto') {
        const consent = await grantConsent(provider, interaction);
        await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
        return;
      }
      send(res, 200, consentPage(spec.name, interaction.uid, params.client_id, prompt.details));
      return;
    }
    send(res, 400, page('Error', `<p id="error">unsupported prompt ${escapeHtml(prompt.name)}</p>`));
    return;
  }

  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = form.get('login') || '';
    const password = form.get('password') || '';
    const account = Object.prototype.hasOwnProperty.call(accounts, login) ? accounts[login] : null;
    const ok = account && typeof account.password === 'string'
      && crypto.timingSafeEqual(
        crypto.createHash('sha256').update(account.password).digest(),
        crypto.createHash('sha256').update(password).digest(),
      );
    if (!ok) {
      send(res, 200, loginPage(spec.name, interaction.uid, params.client_id,
        { error: 'Invalid username or password.', login }));
      return;
    }
    // An account's "amr" (RFC 8176) is how this login authenticated: it goes into the ID token.
    const result = { login: { accountId: account.sub || login, ...(account.amr ? { amr: account.amr } : {}) } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    return;
  }

  if (req.method === 'POST' && action === 'confirm') {
    await readForm(req);
    const consent = await grantConsent(provider, interaction);
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }

  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  send(res, 405, page('Method not allowed', ''));
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

async function main() {
  const config = loadConfig();
  const host = config.host || '127.0.0.1';
  const specs = config.providers || [];
  if (!specs.length) throw new Error('config.providers is empty');

  const servers = [];
  const issuers = {};
  for (const spec of specs) {
    if (!spec.name || !/^[A-Za-z0-9_-]+$/.test(spec.name)) {
      throw new Error(`bad provider name ${JSON.stringify(spec.name)}`);
    }
    const state = { spec };
    const server = http.createServer((req, res) => {
      if (!state.callback) {
        send(res, 503, page('Starting', ''));
        return;
      }
      const url = new URL(req.url, state.issuer);
      if (url.pathname.startsWith('/interaction/')) {
        handleInteraction(state, req, res, url).catch((err) => {
          log(`${spec.name}: interaction failed:`, err);
          if (!res.headersSent) {
            send(res, 400, page('Error', `<p id="error">${escapeHtml(err.message)}</p>`));
          } else {
            res.end();
          }
        });
        return;
      }
      state.callback(req, res);
    });
    server.keepAliveTimeout = 1000;
    // Listen first (port 0 = any free port), so the issuer carries the real port.
    const port = await listen(server, spec.port || 0, host);
    state.issuer = `http://${host}:${port}`;
    Object.assign(state, makeProvider(spec, state.issuer, config.accounts));
    state.callback = state.provider.callback();
    servers.push(server);
    issuers[spec.name] = state.issuer;
  }

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    for (const server of servers) {
      server.close();
      server.closeAllConnections();
    }
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (process.env.OIDC_EXIT_ON_STDIN_EOF === '1') {
    // The parent keeps our stdin open; EOF means it went away, so do not linger as an orphan.
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  process.stdout.write(`READY ${JSON.stringify(issuers)}\n`);
}

main().catch((err) => {
  log('failed to start:', err);
  process.exit(1);
});
