import ArgumentParser
import CTickwireSys
import Foundation
import Synchronization
import TickwireClient
import TickwireCore

/// Set by SIGWINCH; the ticker re-reads the terminal size at its next frame.
let resized = Atomic<Bool>(false)

struct Ticker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live terminal ticker: one row per venue and symbol, flashing on each tick. 'q' quits.")

    @Argument(help: "Subject patterns, such as 'MD.XNAS.*.TRADE' 'MD.XNAS.AAPL.>'.") var patterns: [String] = ["MD.>"]
    @Option(help: "The publisher to subscribe to.") var connect = "tcp://127.0.0.1:5556"
    @Option(help: "Subscribe on a NATS cluster instead: nats://HOST:PORT[,nats://HOST:PORT…].") var nats: String?
    @Option(help: "Over ZeroMQ: the daemon's snapshot endpoint (run --snapshot-endpoint), so the ticker opens full.") var snapshot: String?
    @Option(help: "Frames per second on a terminal.") var fps = 10
    @Option(help: "Seconds between snapshots when stdout is not a terminal.") var interval = 1.0
    @Option(help: "Exit after this many seconds (default: until 'q').") var duration: Double?
    @Flag(help: "Leave out the status line's alerts (ALERT.>) and limit use (RISK.>).") var noStatus = false

    func run() throws {
        // Alerts and risk feed the status line, whatever the rows show.
        let parsed = try parsePatterns(patterns) + (noStatus ? [] : [try SubjectPattern("ALERT.>"), try SubjectPattern("RISK.>")])
        guard fps >= 1 && fps <= 120 else { throw ValidationError("--fps must be between 1 and 120") }
        // Over NATS the ticker opens full: the daemon's snapshot of the rows' last values, then the live stream.
        let subscriber = try makeSubscriber(connect: connect, nats: nats, patterns: parsed, snapshot: nats != nil,
                                            snapshotEndpoint: snapshot)
        let connect = nats ?? self.connect
        installInterruptHandler()
        let tty = isatty(1) == 1
        let frameNanos = tty ? Int64(1_000_000_000 / fps) : Int64(interval * 1e9)
        let terminal = tty ? RawTerminal() : nil
        defer { terminal?.restore() }
        var model = TickerModel(endpoint: connect)
        let start = Nanos.now()
        var nextFrame = start.rawValue
        var out = OutputBuffer()

        while !interrupted.load(ordering: .relaxed) {
            let now = Nanos.now()
            if let duration, Double(now.rawValue - start.rawValue) / 1e9 >= duration { break }
            if now.rawValue >= nextFrame {
                model.tick(now: now)
                if let terminal {
                    if terminal.quitPressed() { break }
                    let (rows, cols) = terminal.size()
                    if resized.exchange(false, ordering: .relaxed) { out.bytes.append(contentsOf: "\u{1B}[2J".utf8) }
                    out.bytes.append(contentsOf: TickerRenderer.frame(model, width: cols, height: rows, now: now).utf8)
                } else {
                    let stamp = now.iso8601
                    for line in TickerRenderer.plainLines(model) { out.bytes.append(contentsOf: "\(stamp) \(line)\n".utf8) }
                }
                out.flush()   // one write per frame
                nextFrame = max(nextFrame + frameNanos, now.rawValue)
            }
            let waitMs = max(0, Int((nextFrame - Nanos.now().rawValue) / 1_000_000))
            do {
                if let first = try subscriber.next(timeoutMs: waitMs) {
                    model.apply(first, now: Nanos.now())
                    // Drain what is already queued, so a fast feed never delays the next frame.
                    var drained = 0
                    while drained < 100_000, let d = try subscriber.poll() { model.apply(d, now: Nanos.now()); drained += 1 }
                }
            } catch {
                if !error.isInterrupted { throw error }
            }
        }
    }
}

/// The terminal in raw mode on the alternate screen, restored exactly as found.
final class RawTerminal {
    private var saved = termios()
    private var restored = false

    init() {
        tcgetattr(0, &saved)
        var raw = saved
        cfmakeraw(&raw)
        raw.c_oflag |= tcflag_t(OPOST)   // keep \n -> \r\n for any stray output
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        tcsetattr(0, TCSANOW, &raw)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in resized.store(true, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        sigaction(SIGWINCH, &action, nil)
        write("\u{1B}[?1049h\u{1B}[?25l\u{1B}[2J")   // alternate screen, hide cursor, clear
    }

    func size() -> (rows: Int, cols: Int) {
        var rows: Int32 = 24, cols: Int32 = 80
        if tw_terminal_size(1, &rows, &cols) != 0 || rows == 0 || cols == 0 { return (24, 80) }
        return (Int(rows), Int(cols))
    }

    /// Reads pending keys without waiting: `q`, `Q` or Ctrl-C (raw mode delivers it as a byte) quit.
    func quitPressed() -> Bool {
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(0, &buf, buf.count)
        return n > 0 && buf[0..<n].contains { $0 == UInt8(ascii: "q") || $0 == UInt8(ascii: "Q") || $0 == 3 }
    }

    func restore() {
        guard !restored else { return }
        restored = true
        write("\u{1B}[0m\u{1B}[?25h\u{1B}[?1049l")   // reset colours, show cursor, leave the alternate screen
        tcsetattr(0, TCSANOW, &saved)
    }

    private func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Foundation.write(1, &bytes, bytes.count)
    }

    deinit { restore() }
}
