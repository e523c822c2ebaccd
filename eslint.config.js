import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'output/', 'dist/', '.cache/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        {
          selector: "Literal[value=/^(sudo|mount|losetup|chroot)$/]",
          message: 'pibake runs in user space: never sudo, mount, losetup or chroot.',
        },
      ],
    },
  },
  {
    // Tests may use a read-only loop mount as an independent oracle.
    files: ['test/**'],
    rules: { 'no-restricted-syntax': 'off' },
  },
);
