import * as oc from 'openid-client';
import { clientKey, startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { accountSecret } from '../delegation/helpers.ts';
import { certBody, generateKeyPair, type KeyPair } from '../peers/simplesamlphp.ts';
import { createTestPki, TEST_POLICY, type TestPki } from '../peers/pki.ts';

// One broker for every fuzz target: the demo profile (demo upstream, account app and API), plus a SAML
// upstream whose IdP key the fuzzer holds (so it can sign what it generates and reach the checks behind
// the signature) and a smartcard upstream behind an HMAC-signing proxy whose key the fuzzer holds too.

export const SAML_UPSTREAM = 'fuzz-saml';
export const CARD_UPSTREAM = 'fuzz-card';
export const PROXY_SECRET = 'fuzz-proxy-hmac-secret-0123456789abcdef';
export const IDP_ENTITY = 'https://idp.fuzz.example';

export interface FuzzBed {
  tb: TestBroker;
  base: string;
  dbFile: string;
  idp: KeyPair;
  pki: TestPki;
  /** The broker's own account client (for API tokens). */
  account: oc.Configuration;
  web: oc.Configuration;
  close(): Promise<void>;
}

function idpMetadata(idp: KeyPair): string {
  return `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="${IDP_ENTITY}">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${certBody(idp.certPem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.fuzz.example/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>`;
}

/** Rate limits off: the fuzzer sends tens of thousands of requests a minute from one address. */
const NO_LIMITS = { tokenPerIp: 0, tokenPerClient: 0, loginPerIp: 0, exchangePerSubjectToken: 0, accountPerMinute: 0, accountChangesPerHour: 0, invitationAttemptsPerAccount: 0, invitationAttemptsPerIp: 0 };

export async function startFuzzBed(): Promise<FuzzBed> {
  const idp = generateKeyPair('fuzz-idp');
  const sp = generateKeyPair('fuzz-sp');
  const pki = await createTestPki();
  const metadataFile = pki.write('fuzz-idp-metadata.xml', idpMetadata(idp));
  const tb = await startTestBroker({
    svcKey: await clientKey(),
    extra: {
      rateLimits: NO_LIMITS,
      upstreams: [
        { id: SAML_UPSTREAM, type: 'saml', displayName: 'Fuzz IdP', idpMetadataFile: metadataFile, spPrivateKey: sp.keyPem, spCertificate: sp.certPem, linkable: [] },
        {
          id: CARD_UPSTREAM,
          type: 'smartcard',
          displayName: 'Fuzz smartcard',
          trust: { caFile: pki.files.smartcardRoots, intermediatesFile: pki.files.smartcardIntermediates, policies: [TEST_POLICY] },
          revocation: { crl: { sources: [{ file: pki.files.crls }] } },
          subject: { from: 'uid', pattern: '^(\\d{12})$' },
          assurance: { acr: 'AAL3_SMARTCARD', aal: 3, amr: ['sc'] },
          proxy: { format: 'rfc9440', authentication: { hmac: { secrets: [PROXY_SECRET] } } },
        },
      ],
    },
  });
  const dbFile = tb.broker.config.store.slice('sqlite:'.length);
  const execute = [oc.allowInsecureRequests];
  const account = await oc.discovery(new URL(tb.base), 'broker-account', undefined, oc.ClientSecretBasic(accountSecret()), { execute });
  const web = await oc.discovery(new URL(tb.base), 'web', undefined, oc.ClientSecretBasic('web-secret-0123456789'), { execute });
  return { tb, base: tb.base, dbFile, idp, pki, account, web, close: () => tb.close() };
}
