import ArgumentParser
import Foundation
import TickwireClient
import TickwireCore
import TickwireZMQ

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print decoded events for subject patterns, one a line.",
        discussion: "Patterns: '*' matches one token, '>' one or more trailing tokens. Example: tickwire tail 'MD.>' --count 1000 --format jsonl")

    @Argument(help: "Subject patterns, such as 'MD.XNAS.*.TRADE' or 'MD.>'.") var patterns: [String]
    @Option(help: "The publisher to subscribe to.") var connect = "tcp://127.0.0.1:5556"
    @Option(help: "jsonl or text.") var format: OutputFormat = .jsonl
    @Option(help: "Exit 0 after this many events.") var count: Int?
    @Option(help: "Exit non-zero if no event arrives for this many seconds.") var timeout: Double?

    func run() throws {
        let parsed = try parsePatterns(patterns)
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        let subscriber: Subscriber
        do { subscriber = try Subscriber(endpoint: connect, patterns: parsed) } catch { throw ValidationError("\(error)") }
        installInterruptHandler()
        var out = OutputBuffer()
        var printed = 0
        var lastArrival = Nanos.now()
        var warned = false
        while !interrupted.load(ordering: .relaxed) {
            // EINTR (Ctrl-C) ends the loop; the compiler of Swift 6.3 crashes on a `catch where` here.
            let result: Result<Delivery?, ZMQError>
            do { result = .success(try subscriber.next(timeoutMs: 200)) } catch { result = .failure(error) }
            if case .failure(let e) = result, e.isInterrupted { break }
            let delivery = try result.get()
            guard let delivery else {
                out.flush()
                let quiet = Double(Nanos.now().rawValue - lastArrival.rawValue) / 1e9
                if let timeout, quiet >= timeout {
                    fail("no event matching \(patterns.joined(separator: " ")) arrived from \(connect) within \(timeout) seconds")
                }
                if !warned && quiet >= 5 {
                    warn("waiting for \(connect): nothing yet after 5 seconds (is 'tickwire run' going?)")
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
                switch format {
                case .jsonl: EventText.appendJSON(subject: w.subject, subjectSeq: w.subjectSeq, event: w.event, to: &out.bytes)
                case .text: out.bytes.append(contentsOf: EventText.textLine(w).utf8)
                }
                out.bytes.append(10)
                printed += 1
                if out.bytes.count > 1 << 16 { out.flush() }
                if let count, printed >= count { out.flush(); return }
            }
        }
        out.flush()
        if subscriber.malformed > 0 { warn("\(subscriber.malformed) malformed messages skipped; last: \(subscriber.lastError.map { "\($0)" } ?? "")") }
    }
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
