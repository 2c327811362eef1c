// Server-rendered pages. Every interpolated value goes through `h` (tagged template that escapes), so a
// value from a request or an upstream can never become markup.

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

/** Markup that is already safe (built by `h`). */
export class SafeHtml {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

function render(v: unknown): string {
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === undefined || v === null || v === false) return '';
  return escapeHtml(v);
}

export function h(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0];
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1];
  });
  return new SafeHtml(out);
}

export const STYLESHEET_PATH = '/assets/nhsuk-frontend.min.css';

export function layout(title: string, body: SafeHtml, options: { status?: 'error' } = {}): string {
  return h`<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${options.status === 'error' ? 'Error: ' : ''}${title} – NHS identity broker</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}">
</head>
<body class="nhsuk-frontend-supported">
<a class="nhsuk-skip-link" href="#maincontent">Skip to main content</a>
<header class="nhsuk-header" role="banner"><div class="nhsuk-header__container nhsuk-width-container"><span class="nhsuk-header__service-name">NHS identity broker</span></div></header>
<div class="nhsuk-width-container">
<main class="nhsuk-main-wrapper" id="maincontent" role="main">
${body}
</main>
</div>
</body>
</html>`.value;
}

export function errorPage(title: string, message: string, reference?: string, action?: { href: string; text: string }): string {
  return layout(
    title,
    h`<div class="nhsuk-grid-row"><div class="nhsuk-grid-column-two-thirds">
<h1 class="nhsuk-heading-l">${title}</h1>
<p class="nhsuk-body">${message}</p>
${action ? h`<p class="nhsuk-body"><a class="nhsuk-button" href="${action.href}">${action.text}</a></p>` : ''}
${reference ? h`<p class="nhsuk-body-s">Reference: <code>${reference}</code></p>` : ''}
</div></div>`,
    { status: 'error' },
  );
}
