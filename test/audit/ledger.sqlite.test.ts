import { sqliteHarness } from './helpers.ts';
import { ledgerSuite } from './suite.ts';

ledgerSuite('sqlite', () => sqliteHarness());
