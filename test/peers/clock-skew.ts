// Preloaded with --import into a broker process to give it a skewed clock (CLOCK_SKEW_SECONDS).
// Date.now is what oidc-provider, jose and the broker read for every time check.
const skewMs = Number(process.env.CLOCK_SKEW_SECONDS ?? 0) * 1000;
const realNow = Date.now.bind(Date);
Date.now = () => realNow() + skewMs;
