import { randomBytes } from 'node:crypto';
import { signXml } from '@node-saml/node-saml/lib/xml.js';
import { BINDING } from './metadata.ts';
import { xmlEscape } from './xml.ts';

// The broker's SP metadata for one upstream IdP, signed with the SP key (RSA-SHA256 and a SHA-256
// digest; node-saml's defaults are SHA-1). Built here rather than by node-saml, whose metadata offers
// AES-CBC for encryption and only an HTTP-POST logout endpoint.

export interface SpMetadataOptions {
  entityId: string;
  acsUrl: string;
  sloUrl?: string;
  signingCertPem: string;
  encryptionCertPem?: string;
  nameIdFormat: string;
  wantAssertionsSigned: boolean;
  privateKeyPem: string;
  signatureAlgorithm: 'sha256' | 'sha512';
  /** Seconds the metadata stays valid. */
  validFor?: number;
}

function certBody(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

function keyDescriptor(use: 'signing' | 'encryption', pem: string, extra = ''): string {
  return `<md:KeyDescriptor use="${use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${certBody(pem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>${extra}</md:KeyDescriptor>`;
}

export function buildSpMetadata(o: SpMetadataOptions): string {
  const validUntil = new Date(Date.now() + (o.validFor ?? 7 * 86_400) * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const encryption = o.encryptionCertPem
    ? keyDescriptor(
        'encryption',
        o.encryptionCertPem,
        '<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/><md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/><md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>',
      )
    : '';
  const xml =
    `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_${randomBytes(20).toString('hex')}" entityID="${xmlEscape(o.entityId)}" validUntil="${validUntil}">` +
    `<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="true" WantAssertionsSigned="${o.wantAssertionsSigned}">` +
    keyDescriptor('signing', o.signingCertPem) +
    encryption +
    (o.sloUrl ? `<md:SingleLogoutService Binding="${BINDING.redirect}" Location="${xmlEscape(o.sloUrl)}"/>` : '') +
    `<md:NameIDFormat>${xmlEscape(o.nameIdFormat)}</md:NameIDFormat>` +
    `<md:AssertionConsumerService Binding="${BINDING.post}" Location="${xmlEscape(o.acsUrl)}" index="0" isDefault="true"/>` +
    `</md:SPSSODescriptor></md:EntityDescriptor>`;
  const xpath = '//*[local-name(.)="EntityDescriptor" and namespace-uri(.)="urn:oasis:names:tc:SAML:2.0:metadata"]';
  return `<?xml version="1.0" encoding="UTF-8"?>\n${signXml(xml, xpath, { reference: xpath, action: 'prepend' }, { privateKey: o.privateKeyPem, publicCert: o.signingCertPem, signatureAlgorithm: o.signatureAlgorithm, digestAlgorithm: o.signatureAlgorithm })}`;
}
