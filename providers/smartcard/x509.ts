// @peculiar/x509 resolves its crypto provider through tsyringe, which needs the Reflect metadata
// polyfill loaded first. Every module of this connector imports the library through this file.
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';
export { AsnConvert } from '@peculiar/asn1-schema';
export * as asn1X509 from '@peculiar/asn1-x509';
