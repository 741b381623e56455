// cookie-signature as express-session uses it, for differential tests: reads JSON from stdin
//   {"sign": [{"sid", "secret"}], "unsign": [{"value", "secrets": [...]}]}
// and prints {"signed": ["s:..."], "unsigned": [sid or null]}. Verification tries each secret
// in order, as express-session's unsigncookie does; a value without `s:` is unsigned.
import signature from "cookie-signature";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const req = JSON.parse(input);

const signed = (req.sign ?? []).map(({ sid, secret }) => "s:" + signature.sign(sid, secret));
const unsigned = (req.unsign ?? []).map(({ value, secrets }) => {
  if (value.substr(0, 2) !== "s:") return null;
  for (const secret of secrets) {
    const sid = signature.unsign(value.slice(2), secret);
    if (sid !== false) return sid;
  }
  return null;
});
process.stdout.write(JSON.stringify({ signed, unsigned }));
