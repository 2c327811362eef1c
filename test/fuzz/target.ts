import type { FuzzBed } from './bed.ts';

/** One endpoint under fuzz: `run` checks numRuns generated inputs and throws on the first failure. */
export interface FuzzTarget {
  name: string;
  run(bed: FuzzBed, numRuns: number): Promise<void>;
}
