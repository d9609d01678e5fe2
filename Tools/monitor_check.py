#!/usr/bin/env python3
"""Checks the live monitor page of a running `tickwire run` in a real headless Chromium (selenium).

  python3 Tools/monitor_check.py --metrics 127.0.0.1:9464 --tickwire .build/debug/tickwire \
      --screenshot .build/artifacts/monitor/monitor.png [--alert PRICE_JUMP]

Opens http://METRICS/, waits for the page to go live, and checks that:
  1. the numbers move (ring published and uptime grow between snapshots);
  2. they match `tickwire stats`, read right after the page: ring capacity and the set of subscriptions exactly;
     published events, each source's events and the subject count within a tolerance, since the page's snapshot is
     older than the stats (at most the page's own rate times the uptime between them, plus a margin);
  3. with --alert RULE, an ALERT.<RULE>.<SYMBOL> the daemon raised shows in the page's alert list, and
     `tickwire stats` counts alerts of that rule;
  4. the browser logged no JavaScript error.
Saves a screenshot (also when a check fails) and prints one line per check; exits 0 only if all pass.
Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`), selenium from PyPI: Tools/setup.sh.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


class CheckFailed(Exception):
    pass


def wait_for(what, predicate, timeout):
    """Polls predicate() until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the page may be between renders
            last_error = e
        time.sleep(0.2)
    raise CheckFailed(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def start_browser():
    options = Options()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1440,1000", "--no-first-run", "--disable-extensions"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


# Reads what the page shows, from its rendered elements, in one script: JavaScript runs between renders, so the
# numbers are those of one snapshot, and no element can go stale under the read (as it can across selenium calls
# while the page replaces its tables once a second).
READ_PAGE = """
const value = (id) => { const v = document.getElementById(id).dataset.value; return v === undefined || v === "" ? null : Number(v); };
const subscriptions = {};
for (const row of document.querySelectorAll("#subscriptions tbody tr[data-name]")) {
  const cells = {};
  for (const c of row.querySelectorAll("td[data-field]")) cells[c.dataset.field] = Number(c.dataset.value);
  subscriptions[row.dataset.name] = cells;
}
const sources = {};
for (const row of document.querySelectorAll("#sources tbody tr[data-name]")) sources[row.dataset.name] = row.cells[2].textContent;
return { uptime: value("uptime"), published: value("ring-published"), rate: value("ring-rate"),
         capacity: value("ring-capacity"), subjects: value("subjects"), subscriptions: subscriptions, sources: sources };
"""


def page_numbers(driver):
    """What the page shows now: raw numbers from the elements' data-value attributes and the sources' counters."""
    n = driver.execute_script(READ_PAGE)
    for key in ["uptime", "published", "rate", "capacity", "subjects"]:
        if n[key] is None:
            raise CheckFailed(f"the page shows no {key} yet")
    n["sources"] = {name: {k: float(v.replace(",", "")) for k, v in re.findall(r"(\w+)=([\d,\.]+)", text)}
                    for name, text in n["sources"].items()}
    return n


def stats_numbers(tickwire, metrics):
    """`tickwire stats`, parsed from the table it prints to a person."""
    out = subprocess.run([tickwire, "stats", "--metrics", metrics], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise CheckFailed(f"tickwire stats failed: {out.stderr.strip()}")
    text = out.stdout
    m = re.search(r"^uptime\s+([\d.e+-]+) s", text, re.M)
    r = re.search(r"^ring\s+(\d+) published, (\d+) slots", text, re.M)
    s = re.search(r"^subjects\s+(\d+)", text, re.M)
    if not (m and r and s):
        raise CheckFailed(f"cannot read tickwire stats:\n{text}")
    sources, subscriptions, alerts = {}, {}, {}
    section = None
    for line in text.splitlines():
        if line.startswith("SOURCE"):
            section = "sources"; continue
        if line.startswith("SUBSCRIPTION"):
            section = "subscriptions"; continue
        if line.startswith("OTHER"):
            section = "other"; continue
        if not line.strip():
            section = None if section != "other" else section; continue
        parts = line.split()
        if section == "sources" and len(parts) == 3:
            sources.setdefault(parts[0], {})[parts[1]] = float(parts[2])
        elif section == "subscriptions" and len(parts) == 6:
            subscriptions[parts[0]] = dict(zip(["delivered", "dropped", "lag", "resyncs", "stalls"], map(float, parts[1:])))
        elif section == "other" and parts[0] == "alerts_total" and len(parts) == 3 and parts[1].startswith("rule="):
            alerts[parts[1][len("rule="):]] = float(parts[2])
    return {"uptime": float(m.group(1)), "published": float(r.group(1)), "capacity": float(r.group(2)),
            "subjects": float(s.group(1)), "sources": sources, "subscriptions": subscriptions, "alerts": alerts, "text": text}


def within(name, page_value, stats_value, rate, seconds_apart, slack=1000.0):
    """The stats were read after the page's snapshot: equal, or ahead by at most twice what the rate explains over
    the uptime between the two, plus `slack` (the simulator's bursts: up to 500 events on top of the rate)."""
    tolerance = 2.0 * rate * max(0.0, seconds_apart) + slack
    ok = page_value <= stats_value <= page_value + tolerance
    return ok, f"{name}: page {page_value:.0f}, stats {stats_value:.0f} (tolerance +{tolerance:.0f} over {seconds_apart:.1f} s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", required=True, help="the daemon's metrics HOST:PORT (the monitor is at /)")
    ap.add_argument("--tickwire", required=True, help="the tickwire binary, to run `tickwire stats`")
    ap.add_argument("--screenshot", required=True, help="where to save the page's screenshot (PNG)")
    ap.add_argument("--alert", help="an alert rule (PRICE_JUMP, …) the daemon raises; its alert must show")
    ap.add_argument("--timeout", type=float, default=45, help="seconds each wait may take")
    ap.add_argument("--deadline", type=int, default=200, help="seconds the whole check may take")
    args = ap.parse_args()

    # A bound of our own, so a hung browser still ends in `finally` (driver.quit ends Chromium and chromedriver)
    # rather than being killed from outside and leaving them behind.
    def overdue(signum, frame):
        raise CheckFailed(f"the check took more than {args.deadline} s")
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(args.deadline)

    os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
    driver = start_browser()
    failures = []
    try:
        url = f"http://{args.metrics}/"
        driver.get(url)
        if "Tickwire monitor" not in driver.title:
            raise CheckFailed(f"{url} is not the monitor page (title {driver.title!r})")
        wait_for("the page to go live", lambda: driver.find_element(By.ID, "status").text == "live", args.timeout)
        first = wait_for("a first snapshot", lambda: page_numbers(driver), args.timeout)
        print(f"ok   live: published {first['published']:.0f} at uptime {first['uptime']:.1f} s")

        moved = wait_for("the numbers to move",
                         lambda: (lambda n: n if n["published"] > first["published"] and n["uptime"] > first["uptime"] else None)(page_numbers(driver)),
                         args.timeout)
        print(f"ok   numbers move: published {first['published']:.0f} -> {moved['published']:.0f}, "
              f"uptime {first['uptime']:.1f} -> {moved['uptime']:.1f} s, {moved['rate']:.0f} events/s")

        # Page first, then stats: the stats are the newer of the two. A few tries: a busy machine may put a snapshot
        # boundary between the two reads, or run the stats command slowly.
        last = []
        for attempt in range(5):
            page = page_numbers(driver)
            stats = stats_numbers(args.tickwire, args.metrics)
            apart = stats["uptime"] - page["uptime"]
            rate = max(page["rate"], moved["rate"], 1.0)
            checks = [
                (page["capacity"] == stats["capacity"], f"ring capacity: page {page['capacity']:.0f}, stats {stats['capacity']:.0f}"),
                (set(page["subscriptions"]) == set(stats["subscriptions"]),
                 f"subscriptions: page {sorted(page['subscriptions'])}, stats {sorted(stats['subscriptions'])}"),
                (set(page["sources"]) == set(stats["sources"]), f"sources: page {sorted(page['sources'])}, stats {sorted(stats['sources'])}"),
                within("published", page["published"], stats["published"], rate, apart),
                within("subjects", page["subjects"], stats["subjects"], 0, apart, slack=100),
            ]
            for name, counters in page["sources"].items():
                if "events" in counters and "events" in stats["sources"].get(name, {}):
                    checks.append(within(f"source {name} events", counters["events"], stats["sources"][name]["events"], rate, apart))
            for name, fields in page["subscriptions"].items():
                if name in stats["subscriptions"]:
                    checks.append(within(f"subscription {name} delivered", fields["delivered"], stats["subscriptions"][name]["delivered"], rate, apart))
            last = checks
            if all(ok for ok, _ in checks):
                break
            time.sleep(1)
        for ok, text in last:
            print(("ok   " if ok else "FAIL ") + "matches stats: " + text)
            if not ok:
                failures.append(text)

        if args.alert:
            prefix = f"ALERT.{args.alert}."
            item = wait_for(f"an {prefix}* alert on the page", lambda: driver.execute_script(
                "const li = document.querySelector(`#alerts li[data-subject^='${arguments[0]}']`);"
                "return li ? [li.dataset.subject, Array.from(li.children).map((c) => c.textContent).join(' ')] : null;", prefix), args.timeout)
            subject, shown = item
            stats = stats_numbers(args.tickwire, args.metrics)
            fired = stats["alerts"].get(args.alert, 0)
            if fired <= 0:
                failures.append(f"the page shows {subject} but tickwire stats counts no {args.alert} alert")
            print(f"{'ok  ' if fired > 0 else 'FAIL'} alert on the page: {subject} ({' '.join(shown.split())}); stats count {fired:.0f}")

        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        for e in errors:
            failures.append(f"browser error: {e.get('message')}")
        print(("ok   " if not errors else "FAIL ") + f"no JavaScript errors ({len(errors)})")
    except CheckFailed as e:
        failures.append(str(e))
        print(f"FAIL {e}")
    finally:
        try:
            driver.save_screenshot(args.screenshot)
            print(f"screenshot: {os.path.abspath(args.screenshot)}")
        finally:
            driver.quit()
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print("monitor check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
