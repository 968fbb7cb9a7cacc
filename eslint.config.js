// Lint rules that carry the design, not just style:
// - machines/ is the pure statechart layer: no Node built-ins, drivers, store or server code;
// - time is injected: no Date.now(), new Date(), setTimeout or setInterval outside the clock module;
// - roles are data: no branching on a role's name anywhere in src/ or machines/.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const BUILT_IN_ROLE_NAMES = 'gateway|worker|builder|capability-imessage';

const pureLayerImports = {
  patterns: [
    {
      group: ['node:*', ...builtinModules, ...builtinModules.map((m) => `${m}/*`)],
      message: 'machines/ is the pure statechart layer and may not use Node built-ins. Put the effect in src/ (an invoked actor implementation registered through setup()).',
    },
    {
      group: ['**/src/driver', '**/src/driver/**', '**/src/store', '**/src/store/**', '**/src/server', '**/src/server/**', '**/src/api/**'],
      message: 'machines/ may not import drivers, the store or server code. Charts name effects; src/ implements them.',
    },
    {
      group: ['lmdb', 'fastify', 'fastify/*', 'ws', 'execa', 'pino'],
      message: 'machines/ may not import I/O libraries. Charts name effects; src/ implements them.',
    },
  ],
};

const noRoleBranching = [
  {
    selector: `BinaryExpression[operator=/^[!=]==?$/] > Literal[value=/^(${BUILT_IN_ROLE_NAMES})$/]`,
    message: 'Do not branch on a role name; derive the behaviour from a role manifest field (roles are declared in Nix).',
  },
  {
    selector: `SwitchCase > Literal[value=/^(${BUILT_IN_ROLE_NAMES})$/]`,
    message: 'Do not switch on a role name; derive the behaviour from a role manifest field (roles are declared in Nix).',
  },
];

const noAmbientTime = [
  { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Use the injected clock (src/common/clock.ts), not Date.now().' },
  { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Use the injected clock (src/common/clock.ts), not new Date().' },
  { selector: "CallExpression[callee.name=/^set(Timeout|Interval)$/]", message: 'Use the injected clock (src/common/clock.ts) for timers.' },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['src/**/*.{ts,js}', 'machines/**/*.ts'],
    ignores: ['src/common/clock.ts'],
    rules: { 'no-restricted-syntax': ['error', ...noRoleBranching, ...noAmbientTime] },
  },
  {
    files: ['machines/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', pureLayerImports] },
  },
  {
    // Tests mutate untyped documents on purpose to build invalid inputs.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['src/cli/bin.js', 'eslint.config.js', 'test/tools/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
