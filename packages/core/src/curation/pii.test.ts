import '../test-utils/linear-engine.js';
import { describe, expect, it } from 'vitest';
import { findPii, ibanValid, luhnValid, redactPii } from './pii.js';

describe('PII redaction', () => {
  it.each([
    ['Mail me at jane.doe+support@example.co.uk please', 'Mail me at [EMAIL] please'],
    ['Call +1 (555) 123-4567 or 020 7946 0958', 'Call [PHONE] or [PHONE]'],
    ['Card 4111 1111 1111 1111 expires soon', 'Card [CARD] expires soon'],
    ['My IBAN is DE89 3704 0044 0532 0130 00.', 'My IBAN is [IBAN].'],
    ['Server 192.168.10.254 and 2001:0db8:85a3:0000:0000:8a2e:0370:7334', 'Server [IP] and [IP]'],
    ['key sk-proj-abcdefghijklmnopqrstuvwx123 and AKIAIOSFODNN7EXAMPLE', 'key [SECRET] and [SECRET]'],
    ['Authorization: Bearer abc.def-ghi_jkl~mno+pqr/stu', 'Authorization: Bearer [SECRET]'],
    [
      'token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
      'token [SECRET]',
    ],
  ])('redacts %s', (input, expected) => {
    expect(redactPii(input).text).toBe(expected);
  });

  it.each([
    'Order 1234567890123456 shipped', // 16 digits, fails Luhn: an order id, not a card
    'Version 1.2.3.4 of the app', // looks like an IP but is a version? still a valid IPv4 shape
    'It costs 12.50 and takes 3-5 days',
    'Call me in 2024',
    'Ticket GB82WEST12345698765433 is fake', // fails mod-97
  ])('leaves ordinary text alone: %s', (input) => {
    const kinds = findPii(input).map((f) => f.kind);
    if (input.startsWith('Version')) expect(kinds).toEqual(['ip']);
    else expect(kinds).toEqual([]);
  });

  it('checks Luhn and IBAN checksums', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(ibanValid('GB82 WEST 1234 5698 7654 32')).toBe(true);
    expect(ibanValid('GB82 WEST 1234 5698 7654 33')).toBe(false);
  });

  it('is configurable: chosen kinds, custom patterns, replacement', () => {
    const text = 'Email a@b.io, account ACCT-99812, phone 555-123-4567';
    const r = redactPii(text, {
      kinds: ['email'],
      custom: { account: 'ACCT-\\d{5}' },
      replacement: '<{kind}>',
    });
    expect(r.text).toBe('Email <EMAIL>, account <ACCOUNT>, phone 555-123-4567');
    expect(r.findings.map((f) => f.kind)).toEqual(['email', 'account']);
  });
});
