// Inputs shared by the socket and HTTP doors, so that both are held to the same rules
// (PROTOCOL.md §3 "Rules that hold for every event", §5 "same validation").

const https = (path) => `https://cdn.example.test/${path}`;

export const attachment = (n, extra = {}) => ({ url: https(`file-${n}.jpg`), type: 'image/jpeg', ...extra });

/** Fields of a message body (without conversationId) that must be refused with VALIDATION. */
export const invalidMessageBodies = [
  ['empty content and no attachments', { content: '' }],
  ['whitespace-only content and no attachments', { content: ' \n\t  ' }],
  ['content of 4001 characters', { content: 'a'.repeat(4001) }],
  ['content of 4001 emoji (counted in Unicode scalar values)', { content: '😀'.repeat(4001) }],
  ['numeric content', { content: 42 }],
  ['no content field', { attachments: [] }],
  ['a javascript: attachment URL', { content: 'x', attachments: [{ url: 'javascript:alert(1)', type: 'text/html' }] }],
  ['a plain http attachment URL', { content: 'x', attachments: [{ url: 'http://cdn.example.test/a.jpg', type: 'image/jpeg' }] }],
  ['an attachment URL that is not a URL', { content: 'x', attachments: [{ url: 'file-1.jpg', type: 'image/jpeg' }] }],
  ['an attachment URL of 2049 characters', { content: 'x', attachments: [{ url: https('a'.repeat(2049 - https('').length)), type: 'image/jpeg' }] }],
  ['11 attachments', { content: 'x', attachments: Array.from({ length: 11 }, (_, i) => attachment(i)) }],
  ['an attachment without url', { content: 'x', attachments: [{ type: 'image/jpeg' }] }],
  ['an attachment without type', { content: 'x', attachments: [{ url: https('a.jpg') }] }],
  ['an attachment that is a string', { content: 'x', attachments: [https('a.jpg')] }],
  ['attachments that are not an array', { content: 'x', attachments: https('a.jpg') }],
  ['a clientMessageId of 65 characters', { content: 'x', clientMessageId: 'c'.repeat(65) }],
  ['a numeric clientMessageId', { content: 'x', clientMessageId: 7 }],
  // Text the store cannot hold (Postgres refuses NUL) or that is no text.
  ['content with a NUL character', { content: 'a\u0000b' }],
  ['content with an escape character', { content: 'red \u001b[31m' }],
  ['an attachment name with a NUL character', { content: 'x', attachments: [attachment(1, { name: 'a\u0000.jpg' })] }],
  ['an attachment URL with a NUL character', { content: 'x', attachments: [{ url: https('a\u0000.jpg'), type: 'image/jpeg' }] }],
  ['a clientMessageId with a NUL character', { content: 'x', clientMessageId: 'id\u0000' }],
];

/** Bodies that must be accepted, with the content the stored Message must have. */
export const validMessageBodies = [
  ['content of exactly 4000 characters', { content: 'a'.repeat(4000) }, 'a'.repeat(4000)],
  ['4000 emoji (counted in Unicode scalar values, not UTF-16 units)', { content: '😀'.repeat(4000) }, '😀'.repeat(4000)],
  ['content padded with whitespace (trimmed)', { content: '  hello  \n' }, 'hello'],
  ['content with line breaks and tabs', { content: 'one\ntwo\r\n\tthree' }, 'one\ntwo\r\n\tthree'],
  ['4000 characters padded with whitespace (counted after trimming)', { content: `   ${'b'.repeat(4000)}   ` }, 'b'.repeat(4000)],
  ['empty content with an attachment', { content: '', attachments: [attachment(1)] }, ''],
  ['10 attachments', { content: 'ten', attachments: Array.from({ length: 10 }, (_, i) => attachment(i)) }, 'ten'],
  ['an attachment URL of exactly 2048 characters', { content: 'long url', attachments: [{ url: https('a'.repeat(2048 - https('').length)), type: 'image/png' }] }, 'long url'],
];
