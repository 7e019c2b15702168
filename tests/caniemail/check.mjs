// The caniemail checker (@jsx-email/doiuse-email) on the inline styles of an email's HTML.
//
//   node tests/caniemail/check.mjs MESSAGE.html [CLIENT-GLOB ...]
//
// Prints one JSON line: every element that has a style attribute, with its tag, its
// declarations, and what caniemail says of them for the clients (default: Outlook on
// Windows and every Gmail), as {tag, style, errors, notes}. Only inlined styles: the
// <style> blocks in <head> are enhancements for the clients that read them, and the
// checker's findings about them say nothing about what Outlook draws. The element is
// checked alone, so that each finding belongs to it: the checker does not say where.
import { readFileSync } from 'node:fs';
import { doIUseEmail } from '@jsx-email/doiuse-email';
import { parseDocument } from 'htmlparser2';

const [file, ...globs] = process.argv.slice(2);
const clients = globs.length ? globs : ['outlook.windows', 'gmail.*'];
const document = parseDocument(readFileSync(file, 'utf8'));

const styled = [];
const walk = (node) => {
  if (node.type === 'tag' && node.attribs && node.attribs.style) styled.push(node);
  for (const child of node.children || []) walk(child);
};
walk(document);

const quote = (value) => value.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
const elements = styled.map((node) => {
  const html = `<!DOCTYPE html><html><head></head><body><${node.name} style="${quote(node.attribs.style)}"></${node.name}></body></html>`;
  const result = doIUseEmail(html, { emailClients: clients });
  // Findings about the wrapper document itself (<body>, <html>) are not this element's.
  const own = (line) => !/`<body> element`|`<html> element`|`<head> element`/.test(line);
  return {
    tag: node.name,
    class: node.attribs.class || '',
    style: node.attribs.style,
    errors: (result.errors || []).filter(own),
    notes: (result.notes || []).filter(own),
  };
});
process.stdout.write(JSON.stringify({ clients, elements }) + '\n');
