import ArgumentParser
import Foundation
import TickwireClient
import TickwireCore
import TickwireZMQ

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print decoded events for subject patterns, one a line.",
        discussion: """
        Patterns: '*' matches one token, '>' one or more trailing tokens. Example: tickwire tail 'MD.>' --count 1000 --format jsonl
        Exit status: 0 after --count events (or Ctrl-C); 1 when --timeout passes with no event; 64 on a bad argument,
        such as an invalid pattern. Malformed messages from the publisher are counted and reported on stderr.
        """)

    @Argument(help: "Subject patterns, such as 'MD.XNAS.*.TRADE' or 'MD.>'.") var patterns: [String]
    @Option(help: "The publisher to subscribe to.") var connect = "tcp://127.0.0.1:5556"
    @Option(help: "Subscribe on a NATS cluster instead: nats://HOST:PORT[,nats://HOST:PORT…].") var nats: String?
    @Flag(help: "With --nats: first print the last value of every matching subject (the daemon's snapshot), then the live stream.")
    var snapshot = false
    @Option(help: "jsonl or text.") var format: OutputFormat = .jsonl
    @Option(help: "Exit 0 after this many events.") var count: Int?
    @Option(help: "Exit 1 if no event arrives for this many seconds (from the start, or since the last event).") var timeout: Double?

    func validate() throws {
        _ = try parsePatterns(patterns)
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be a positive number of seconds") }
    }

    func run() throws {
        let parsed = try parsePatterns(patterns)
        for p in parsed { if let note = rootWarning(p) { warn(note) } }
        guard !snapshot || nats != nil else { throw ValidationError("--snapshot needs --nats (the snapshot service answers on NATS)") }
        let subscriber = try makeSubscriber(connect: connect, nats: nats, patterns: parsed, snapshot: snapshot)
        let connect = nats ?? self.connect
        if snapshot && subscriber.snapshotEntries == nil { warn("no snapshot from \(connect) within 5 seconds (is a daemon publishing there with --nats?); live stream only") }
        installInterruptHandler()
        var out = OutputBuffer()
        var droppedReported: Int64 = 0
        var printed = 0
        let start = Nanos.now()
        var lastArrival = start
        var lastFlush = start
        var warned = false
        var malformedReport = MalformedReport()
        // Every way out reports what was dropped, so a foreign publisher is never mistaken for a quiet one.
        defer { malformedReport.final(subscriber) }
        while !interrupted.load(ordering: .relaxed) {
            // EINTR (Ctrl-C) ends the loop; the compiler of Swift 6.3 crashes on a `catch where` here.
            let result: Result<Delivery?, ZMQError>
            do { result = .success(try subscriber.next(timeoutMs: 200)) } catch { result = .failure(error) }
            if case .failure(let e) = result, e.isInterrupted { break }
            let delivery = try result.get()
            malformedReport.update(subscriber, flush: { out.flush() })
            let dropped = subscriber.droppedLocally
            if dropped > droppedReported {
                out.flush()
                warn("the NATS client dropped \(dropped - droppedReported) messages at its pending limit (this process reads too slowly); each shows as a gap of its subject")
                droppedReported = dropped
            }
            guard let delivery else {
                out.flush()
                let quiet = Double(Nanos.now().rawValue - lastArrival.rawValue) / 1e9
                if let timeout, quiet >= timeout {
                    let what = patterns.joined(separator: " ")
                    if printed == 0 {
                        malformedReport.final(subscriber)
                        fail("no event matching \(what) arrived from \(connect) within \(timeout) seconds\(malformedReport.aside(subscriber))")
                    }
                    malformedReport.final(subscriber)
                    fail("\(printed) events printed, then none matching \(what) from \(connect) for \(timeout) seconds")
                }
                if !warned && printed == 0 && quiet >= 5 {
                    warn("waiting for \(connect): no event matching \(patterns.joined(separator: " ")) after 5 seconds\(malformedReport.aside(subscriber)) (is 'tickwire run' going?)")
                    warned = true
                }
                continue
            }
            lastArrival = Nanos.now()
            switch delivery {
            case .gap(let subject, let first, let last):
                out.flush()
                warn("gap: \(subject) lost subject_seq \(first)...\(last) (\(last - first + 1) messages)")
            case .event(let w):
                if w.event.kind == .gap && w.subject.hasPrefix(Subscriber.gapNoticePrefix) {
                    let g = w.event.gapBody
                    out.flush()
                    warn("gap: the publisher could not send seq \(g.first)...\(g.last) of stream \(w.subject.dropFirst(Subscriber.gapNoticePrefix.count)) to NATS (\(g.count) messages)")
                }
                switch format {
                case .jsonl: TailText.appendJSON(subject: w.subject, subjectSeq: w.subjectSeq, event: w.event, to: &out.bytes)
                case .text: out.bytes.append(contentsOf: TailText.textLine(w).utf8)
                }
                out.bytes.append(10)
                printed += 1
                // Large writes under load, but never more than 100 ms behind: a trickle that never lets `next`
                // time out must still reach the terminal (or a pipe) before 64 KiB pile up.
                if out.bytes.count > 1 << 16 || Nanos.now().rawValue - lastFlush.rawValue > 100_000_000 {
                    out.flush()
                    lastFlush = Nanos.now()
                }
                if let count, printed >= count { out.flush(); return }
            }
        }
        out.flush()
    }
}

/// A subscriber on the ZeroMQ endpoint, or on the NATS cluster when `nats` names one.
/// `snapshot` over NATS asks the publishing daemon there; over ZeroMQ `snapshotEndpoint` names the daemon's socket.
func makeSubscriber(connect: String, nats: String?, patterns: [SubjectPattern], snapshot: Bool = false,
                    snapshotEndpoint: String? = nil) throws -> Subscriber {
    do {
        if let nats { return try Subscriber(natsURLs: nats, patterns: patterns, snapshot: snapshot) }
        return try Subscriber(endpoint: connect, patterns: patterns, snapshot: snapshotEndpoint)
    } catch {
        throw ValidationError("\(error)")
    }
}

/// Reports malformed messages on stderr: the first at once with its reason, then a running count at most every
/// 5 seconds, and a summary when tail ends.
struct MalformedReport {
    var reported: UInt64 = 0
    var lastReport = Nanos(0)
    var finished = false

    mutating func update(_ s: Subscriber, flush: () -> Void) {
        guard s.malformed > reported else { return }
        let now = Nanos.now()
        if reported == 0 || now.rawValue - lastReport.rawValue >= 5 * Nanos.perSecond {
            flush()
            warn("malformed message skipped (\(s.malformed) so far: \(Self.split(s))): \(s.lastError.map { "\($0)" } ?? "")")
            reported = s.malformed
            lastReport = now
        }
    }

    mutating func final(_ s: Subscriber) {
        guard !finished else { return }
        finished = true
        if s.malformed > 0 {
            warn("\(s.malformed) malformed messages skipped (\(Self.split(s))); last: \(s.lastError.map { "\($0)" } ?? "")")
        }
    }

    /// ", but N malformed messages arrived" when any did.
    func aside(_ s: Subscriber) -> String { s.malformed > 0 ? ", but \(s.malformed) malformed messages arrived" : "" }

    static func split(_ s: Subscriber) -> String {
        "\(s.malformedFrames) with a wrong frame count, \(s.malformedPayloads) with a bad subject or payload"
    }
}

/// A note for a pattern whose root no Tickwire stream has: it is valid, but matches nothing Tickwire publishes
/// (subjects are case-sensitive: `md.>` is not `MD.>`).
func rootWarning(_ p: SubjectPattern) -> String? {
    let roots = ["MD", "TRADE", "ALERT", "RISK", "SYS"]
    guard case .literal(let root) = p.tokens.first, !roots.contains(root) else { return nil }
    return "pattern '\(p.text)': no Tickwire stream starts with '\(root)' (the roots are \(roots.joined(separator: ", ")); subjects are case-sensitive)"
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case jsonl, text
}

func parsePatterns(_ texts: [String]) throws -> [SubjectPattern] {
    guard !texts.isEmpty else { throw ValidationError("give at least one subject pattern, such as 'MD.>'") }
    return try texts.map { t in
        do { return try SubjectPattern(t) } catch let e as SubjectError { throw ValidationError("invalid pattern '\(t)': \(e.reason)") }
    }
}

/// Collects output bytes and writes them to stdout in large pieces.
struct OutputBuffer {
    var bytes: [UInt8] = []
    init() { bytes.reserveCapacity(1 << 17) }
    mutating func flush() {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n <= 0 { if errno == EINTR { continue }; Foundation.exit(0) }
            offset += n
        }
        bytes.removeAll(keepingCapacity: true)
    }
}

func warn(_ message: String) {
    FileHandle.standardError.write(Data("tickwire: \(message)\n".utf8))
}

func fail(_ message: String) -> Never {
    warn(message)
    Foundation.exit(1)
}
