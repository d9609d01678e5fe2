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
        let stale = m.staleRows
        let title = "tickwire ticker  \(m.endpoint)  \(m.rows.count) books  \(m.events) events  gaps \(m.gaps) (\(m.lost) lost)"
            + (stale > 0 ? "  \(stale) STALE" : "")
        line(title, style: esc + "1m")
        line(columns(header), style: esc + "4m")
        let bodyLines = height - 4
        for key in m.order.prefix(max(0, bodyLines)) {
            guard let r = m.rows[key] else { continue }
            out += row(r, width: width, now: now, color: color) + esc + "K\r\n"
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
        if let c = r.change { change = (c > 0 ? "+" : "") + price(c) } else { change = "" }
        return [r.symbol, r.venue, r.last.map { price($0.e8) } ?? "-", change,
                r.bid.map { "\(r.bidSize) \(price($0.e8))" } ?? "-", "x", r.ask.map { "\(price($0.e8)) \(r.askSize)" } ?? "-",
                r.volume.description, String(r.updatesPerSecond), (r.status.isEmpty ? "-" : r.status) + (r.stale ? " STALE" : "")]
    }

    /// One row, styled per cell: the last price flashes green on an up-tick and red on a down-tick; the change
    /// is green or red. Cells are padded before styling, so escapes never disturb the alignment.
    static func row(_ r: TickerModel.Row, width: Int, now: Nanos, color: Bool) -> String {
        var visible = 0, out = ""
        let flashing = color && now < r.flashUntil && r.flashDirection != 0
        for (i, cell) in cells(r).enumerated() {
            let w = widths[i]
            var text = pad(cell, w, left: rightAligned(i)) + " "
            if visible + text.count > width { text = String(text.prefix(max(0, width - visible))) }
            visible += text.count
            if i == 2 && flashing {
                out += esc + (r.flashDirection > 0 ? "30;42" : "97;41") + "m" + text + esc + "0m"
            } else if i == 3 && color, let c = r.change, c != 0 {
                out += esc + (c > 0 ? "32" : "31") + "m" + text + esc + "0m"
            } else {
                out += text
            }
            if visible >= width { break }
        }
        return out + String(repeating: " ", count: max(0, width - visible))
    }

    /// Prices with at least two decimals, so a column of them lines up (199.70, not 199.7).
    static func price(_ e8: Int64) -> String {
        let s = FixedPoint.format(e8: e8)
        guard let dot = s.firstIndex(of: ".") else { return s + ".00" }
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        return decimals >= 2 ? s : s + String(repeating: "0", count: 2 - decimals)
    }

    static func rightAligned(_ column: Int) -> Bool { column >= 2 && column != 5 && column != 6 && column != 9 }

    static let widths = [8, 6, 11, 9, 18, 1, 18, 12, 6, 7]   // ST: a state and STALE

    static func columns(_ cells: [String]) -> String {
        var s = ""
        for (i, c) in cells.enumerated() {
            let w = widths[i]
            // Numbers right-aligned, names left-aligned.
            s += pad(c, w, left: rightAligned(i))
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
