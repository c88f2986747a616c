// Reporting shared by the interop pages: every console message and
// uncaught error goes to POST /log on the test's server; post sends JSON
// to the test, describe renders any value for a report, status shows and
// logs a line of progress.
const statusEl = document.getElementById("status");

let logSeq = 0;
export function post(path, body) {
	return fetch(path, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify(body),
	}).catch(() => {});
}

export function describe(v) {
	// connect() rejects with an AggregateError of the transports' errors.
	if (v instanceof AggregateError) return `${v.name}: ${v.message} (${v.errors.map((e) => describe(e).split("\n")[0]).join("; ")})`;
	if (v instanceof Error) return `${v.name}: ${v.message}${v.stack ? `\n${v.stack}` : ""}`;
	if (typeof v === "string") return v;
	try {
		return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));
	} catch {
		return String(v);
	}
}

for (const level of ["debug", "log", "info", "warn", "error"]) {
	const orig = console[level].bind(console);
	console[level] = (...args) => {
		orig(...args);
		void post("/log", { seq: logSeq++, level, text: args.map(describe).join(" ") });
	};
}
addEventListener("error", (e) => console.error("uncaught:", e.error ?? e.message));
addEventListener("unhandledrejection", (e) => console.error("unhandled rejection:", e.reason));

export function status(text) {
	statusEl.textContent = text;
	console.info(`status: ${text}`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// state.done turns true once the test's GET /state says it has what it
// needs; pollState polls it every 100 ms until then.
export const state = { done: false };
export async function pollState() {
	while (!state.done) {
		try {
			const r = await fetch("/state");
			state.done = (await r.json()).done;
		} catch (e) {
			console.warn("state poll:", e);
		}
		await sleep(100);
	}
}
