import type { ActionName, ActorName, GuardName } from './vocabulary.ts';

/**
 * A statechart as plain data: what the composer produces, what golden files hold and what
 * src/ hands to XState's setup().createMachine(). It holds names and parameters only, never
 * functions, so it can be persisted, drawn and diffed.
 */
export interface ActionRef {
  type: ActionName;
  params?: Record<string, unknown>;
}

export interface GuardRef {
  type: GuardName;
  params?: Record<string, unknown>;
}

export interface TransitionConfig {
  target?: string;
  guard?: GuardRef;
  actions?: ActionRef[];
  reenter?: boolean;
  description?: string;
}

export type Transitions = TransitionConfig | TransitionConfig[];

export interface InvokeConfig {
  id: string;
  src: ActorName;
  input?: Record<string, unknown>;
  onDone?: Transitions;
  onError?: Transitions;
}

export interface StateConfig {
  description?: string;
  type?: 'parallel' | 'final';
  initial?: string;
  entry?: ActionRef[];
  exit?: ActionRef[];
  invoke?: InvokeConfig[];
  on?: Record<string, Transitions>;
  always?: TransitionConfig[];
  onDone?: Transitions;
  states?: Record<string, StateConfig>;
}

export interface ChartConfig extends StateConfig {
  id: string;
  initial: string;
  states: Record<string, StateConfig>;
}
