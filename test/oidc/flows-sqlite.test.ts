import { oidcFlows } from './flows.ts';

oidcFlows('sqlite', async () => undefined);
