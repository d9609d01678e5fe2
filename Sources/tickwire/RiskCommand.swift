import ArgumentParser
import Foundation
import TickwireClient
import TickwireCore

struct Risk: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live table of each desk's limit use (RISK.<DESK>): position, notional, P&L, tightest limit used.")

    @Option(help: "The publisher to subscribe to.") var connect = "tcp://127.0.0.1:5556"
    @Option(help: "Subscribe on a NATS cluster instead: nats://HOST:PORT[,nats://HOST:PORT…].") var nats: String?
    @Option(help: "Desks to show (default: all).") var desk: [String] = []
    @Option(help: "Seconds between refreshes.") var interval = 1.0
    @Option(help: "Exit after this many seconds (default: until Ctrl-C or q).") var duration: Double?

    func run() throws {
        let patterns = desk.isEmpty ? [try SubjectPattern("RISK.>")] : try desk.map { try SubjectPattern("RISK.\($0)") }
        let subscriber = try makeSubscriber(connect: connect, nats: nats, patterns: patterns)
        let connect = nats ?? self.connect
        installInterruptHandler()
        let tty = isatty(1) == 1
        let terminal = tty ? RawTerminal() : nil
        defer { terminal?.restore() }
        var rows: [String: (RiskUse, Nanos)] = [:]
        let start = Nanos.now()
        var next = start.rawValue
        var out = OutputBuffer()
        while !interrupted.load(ordering: .relaxed) {
            let now = Nanos.now()
            if let duration, Double(now.rawValue - start.rawValue) / 1e9 >= duration { break }
            if terminal?.quitPressed() == true { break }
            if now.rawValue >= next {
                let lines = RiskTable.lines(rows.mapValues { $0.0 })
                if tty {
                    out.bytes.append(contentsOf: "\u{1B}[H\u{1B}[1mtickwire risk  \(connect)\u{1B}[0m\u{1B}[K\r\n".utf8)
                    for line in lines { out.bytes.append(contentsOf: (line + "\u{1B}[K\r\n").utf8) }
                    out.bytes.append(contentsOf: "\u{1B}[J".utf8)
                } else {
                    for line in lines { out.bytes.append(contentsOf: "\(now.iso8601) \(line)\n".utf8) }
                }
                out.flush()
                next += Int64(interval * 1e9)
            }
            do {
                if case .event(let w)? = try subscriber.next(timeoutMs: 100), w.event.kind == .risk {
                    rows[String(w.subject.dropFirst(5))] = (w.event.riskBody, now)
                }
            } catch {
                if !error.isInterrupted { throw error }
            }
        }
    }
}

enum RiskTable {
    static func lines(_ rows: [String: RiskUse]) -> [String] {
        func col(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        var out = ["DESK".padding(toLength: 16, withPad: " ", startingAt: 0) + col("POSITION", 14) + col("NOTIONAL", 18) + col("P&L", 16) + col("LIMIT USED", 12)]
        for desk in rows.keys.sorted() {
            let r = rows[desk]!
            out.append(desk.padding(toLength: 16, withPad: " ", startingAt: 0) + col(Quantity(e8: r.position).description, 14)
                       + col(Price(e8: r.notional).description, 18) + col(Price(e8: r.pnl).description, 16)
                       + col(String(format: "%.1f%%", Double(r.usedBasisPoints) / 100), 12))
        }
        if rows.isEmpty { out.append("(no desk has traded yet)") }
        return out
    }
}
