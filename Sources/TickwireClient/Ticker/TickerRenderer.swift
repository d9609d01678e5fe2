import TickwireCore

/// Turns a `TickerModel` into one terminal frame. Pure: the same model, size and time give the same bytes,
/// so it is tested without a terminal.
public enum TickerRenderer {
    static let esc = "\u{1B}["
    static let header = ["SYMBOL", "VENUE", "LAST", "CHG", "BID", "x", "ASK", "VOLUME", "UPD/S", "ST"]

    /// A full frame for the alternate screen: cursor home, every line padded to `width` and cleared to its end,
    /// the rest of the screen cleared. Written with one `write` per frame, so it never flickers.
    public static func frame(_ m: TickerModel, width: Int, height: Int, now: Nanos, color: Bool = true) -> String {
        let width = max(20, width), height = max(3, height)
        var out = esc + "H"
        func line(_ text: String, style: String = "") {
            let fitted = fit(text, width)
            out += style.isEmpty || !color ? fitted : style + fitted + esc + "0m"
            out += esc + "K\r\n"
        }
        let title = "tickwire ticker  \(m.endpoint)  \(m.rows.count) books  \(m.events) events  gaps \(m.gaps) (\(m.lost) lost)"
        line(title, style: esc + "1m")
        line(columns(header), style: esc + "4m")
        let bodyLines = height - 4
        for key in m.order.prefix(max(0, bodyLines)) {
            guard let r = m.rows[key] else { continue }
            let cells = cells(r)
            let flashing = now < r.flashUntil && r.flashDirection != 0
            if flashing && color {
                let bg = r.flashDirection > 0 ? "42;30" : "41;97"
                out += esc + bg + "m" + fit(columns(cells), width) + esc + "0m" + esc + "K\r\n"
            } else {
                out += fit(columns(cells), width) + esc + "K\r\n"
            }
        }
        let hidden = m.order.count - max(0, bodyLines)
        if hidden > 0 { line("… \(hidden) more rows (enlarge the window)") }
        out += esc + "J"
        // The status line sits on the last row of the screen.
        out += esc + "\(height);1H"
        let status = [m.lastAlert.isEmpty ? "" : "ALERT \(m.lastAlert)", m.lastRisk.isEmpty ? "" : "RISK \(m.lastRisk)",
                      "q quits"].filter { !$0.isEmpty }.joined(separator: "  |  ")
        out += (color ? esc + "7m" : "") + fit(status, width) + (color ? esc + "0m" : "")
        return out
    }

    /// Plain rows for a pipe or a file: no escapes, one snapshot.
    public static func plainLines(_ m: TickerModel) -> [String] {
        [columns(header)] + m.order.compactMap { m.rows[$0].map { columns(cells($0)) } }
    }

    static func cells(_ r: TickerModel.Row) -> [String] {
        let change: String
        if let c = r.change { change = (c > 0 ? "+" : "") + FixedPoint.format(e8: c) } else { change = "" }
        return [r.symbol, r.venue, r.last.map(\.description) ?? "-", change,
                r.bid.map { "\(r.bidSize) \($0)" } ?? "-", "x", r.ask.map { "\($0) \(r.askSize)" } ?? "-",
                r.volume.description, String(r.updatesPerSecond), r.status]
    }

    static let widths = [8, 6, 11, 9, 18, 1, 18, 12, 6, 2]

    static func columns(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            let w = widths[i]
            // Numbers right-aligned, names left-aligned.
            let rightAligned = i >= 2 && i != 5 && i != 9 && i != 6
            s += rightAligned ? pad(c, w, left: true) : pad(c, w, left: false)
            s += " "
        }
        return s
    }

    static func pad(_ s: String, _ w: Int, left: Bool) -> String {
        if s.count >= w { return String(s.prefix(w)) }
        let fill = String(repeating: " ", count: w - s.count)
        return left ? fill + s : s + fill
    }

    static func fit(_ s: String, _ w: Int) -> String { s.count > w ? String(s.prefix(w)) : s + String(repeating: " ", count: w - s.count) }
}
