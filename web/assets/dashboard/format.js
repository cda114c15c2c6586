// How times, durations, ids and values read on the page.

const pad = (n, width = 2) => String(n).padStart(width, "0");

// 23:08:53 (or 23:08:53.570 withMs), local time.
export function clock(date, withMs) {
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return withMs ? `${time}.${pad(date.getMilliseconds(), 3)}` : time;
}

// An API timestamp: the local time today, with the date on any other day; "—" for none.
export function stamp(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (date.toDateString() === new Date().toDateString()) return clock(date);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock(date)}`;
}

// "0.4 s ago", "12 s ago", "3 min ago", ...
export function ago(seconds) {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s ago`;
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// "12 ms", "3.02 s", "14.5 s", "2 min 05 s", "1 h 02 min".
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
}

// How long a task ran: started_at to finished_at, or to now while it runs; "—" before it starts.
export function taskDuration(task) {
  if (!task.started_at) return "—";
  const end = task.finished_at ? Date.parse(task.finished_at) : Date.now();
  return duration(Math.max(0, end - Date.parse(task.started_at)));
}

// The first 8 characters of a task id, as tables show it.
export function short(id) {
  return String(id).slice(0, 8);
}

// "duration_ms" -> "Duration ms": the API's field name, readable.
export function label(key) {
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}
