import { RatchetError } from '@ratchet/core';
import type * as OidcClient from 'openid-client';
import type { ServerConfig } from './config.js';

/** What the identity provider vouched for, once the code exchange and the ID token checked out. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  email?: string;
  emailVerified: boolean;
  name?: string;
}

/** What the browser keeps (HTTP-only cookie) between leaving for the provider and coming back. */
export interface OidcFlow {
  state: string;
  nonce: string;
  codeVerifier: string;
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Sign-in with OpenID Connect through `openid-client`: the authorization code flow with PKCE
 * (S256), state and nonce. Discovery runs on first use and is kept. Plain HTTP is allowed for a
 * provider on this machine only (tests, a local provider); anything else must be HTTPS.
 */
export class OidcSignIn {
  private configuration?: Promise<OidcClient.Configuration>;
  private library?: Promise<typeof OidcClient>;

  constructor(
    private readonly settings: {
      issuer: string;
      clientId: string;
      clientSecret?: string;
      redirectUrl: string;
    },
  ) {}

  /** The sign-in settings from the server config, or undefined when SSO is not configured. */
  static fromConfig(config: ServerConfig): OidcSignIn | undefined {
    if (!config.oidcIssuer || !config.oidcClientId || !config.oidcRedirectUrl) return undefined;
    return new OidcSignIn({
      issuer: config.oidcIssuer,
      clientId: config.oidcClientId,
      clientSecret: config.oidcClientSecret,
      redirectUrl: config.oidcRedirectUrl,
    });
  }

  private lib(): Promise<typeof OidcClient> {
    this.library ??= import('openid-client');
    return this.library;
  }

  private async config(): Promise<OidcClient.Configuration> {
    const lib = await this.lib();
    this.configuration ??= (async () => {
      const issuer = new URL(this.settings.issuer);
      const insecureAllowed = issuer.protocol === 'http:' && loopbackHosts.has(issuer.hostname);
      return lib.discovery(
        issuer,
        this.settings.clientId,
        this.settings.clientSecret,
        undefined,
        insecureAllowed ? { execute: [lib.allowInsecureRequests] } : undefined,
      );
    })();
    // A provider that was down at first use is asked again next time.
    this.configuration.catch(() => {
      this.configuration = undefined;
    });
    return this.configuration;
  }

  /** Where to send the browser, and what to remember until it returns. */
  async start(): Promise<{ url: string; flow: OidcFlow }> {
    const lib = await this.lib();
    const config = await this.config();
    const flow: OidcFlow = {
      state: lib.randomState(),
      nonce: lib.randomNonce(),
      codeVerifier: lib.randomPKCECodeVerifier(),
    };
    const url = lib.buildAuthorizationUrl(config, {
      redirect_uri: this.settings.redirectUrl,
      scope: 'openid email profile',
      code_challenge: await lib.calculatePKCECodeChallenge(flow.codeVerifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    return { url: url.href, flow };
  }

  /** Exchanges the code the provider sent back (the callback's query) and checks the ID token. */
  async finish(callbackQuery: string, flow: OidcFlow): Promise<OidcIdentity> {
    const lib = await this.lib();
    const config = await this.config();
    const current = new URL(this.settings.redirectUrl);
    current.search = callbackQuery;
    let tokens: Awaited<ReturnType<typeof lib.authorizationCodeGrant>>;
    try {
      tokens = await lib.authorizationCodeGrant(config, current, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw new RatchetError(
        'unauthorized',
        `code: the identity provider's answer did not check out (${(err as Error).message})`,
        'code',
      );
    }
    const claims = tokens.claims();
    if (!claims)
      throw new RatchetError('unauthorized', 'id_token: the provider sent no ID token', 'id_token');
    // Many providers keep the email out of the ID token: then the userinfo endpoint has it (for
    // the same subject; openid-client checks that).
    const profile: Record<string, unknown> =
      typeof claims.email === 'string'
        ? claims
        : await lib.fetchUserInfo(config, tokens.access_token, claims.sub);
    return {
      issuer: claims.iss,
      subject: claims.sub,
      email: typeof profile.email === 'string' ? profile.email : undefined,
      emailVerified: profile.email_verified === true,
      name: typeof profile.name === 'string' ? profile.name : undefined,
    };
  }
}
