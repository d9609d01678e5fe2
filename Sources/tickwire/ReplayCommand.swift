import ArgumentParser
import Foundation
import TickwireCore
import TickwireStore
import TickwireZMQ

/// `tickwire replay`: history as known at K, to stdout, a file, or a ZeroMQ endpoint speaking the live protocol.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay stored events as they were known at a moment.",
        discussion: """
            Events with event time in [--from, --to) whose subject matches --subjects, as known at --as-of (now when \
            left out), in order of event time, then subject, then known time. The same query gives the same bytes \
            every run. Times are ISO-8601 UTC (2026-01-05T14:30:00Z) or integer nanoseconds.
            """)

    @Option(help: "Subject pattern (`*` one token, `>` the rest).") var subjects: String
    @Option(help: "Start of the event-time window (inclusive).") var from: String
    @Option(help: "End of the event-time window (exclusive).") var to: String
    @Option(name: .customLong("as-of"), help: "Replay as known at this time.") var asOf: String?
    @Option(help: "event (the default: --from/--to and the order are event time, corrections applied) or known (every version as it arrived, in arrival order: what a live system saw).")
    var time: String = "event"
    @Option(help: "max, or a multiple of the recorded pace: 1x, 10x.") var pace: String = "max"
    @Option(help: "jsonl, binary (length-prefixed subject and wire payload), arrow (an Arrow IPC stream of typed columns) or arrow-file (the Arrow IPC file format, to --out: pl.read_ipc maps it).") var format: String = "jsonl"
    @OptionGroup var arrowDecimal: ArrowDecimalOption
    @Option(help: "Bind a ZeroMQ PUB endpoint and publish there instead of writing.") var publish: String?
    @Option(name: .customLong("wait-subscriber"), help: "With --publish: seconds to wait for a first subscriber (then publish anyway).")
    var waitSubscriber: Double = 5
    @Flag(help: "jsonl: first a line recording the as-of moment used (now, when --as-of is left out), to repeat the run exactly.")
    var header = false
    @Option(help: "Write to this file instead of standard output.") var out: String?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        var query = try StoreQuery(subjects: subjects, from: from, to: to, asOf: asOf)
        query.time = try StoreQuery.timeAxis(time)
        let arrow = try ArrowWriter.Layout(format: format, out: out)
        if header || arrow != nil { query = RunMetadata.pinned(query) }
        let pace = try ReplayPace(parsing: pace)
        if let arrow {
            guard pace == .max, publish == nil else { throw ValidationError("--format \(format) writes as fast as it can: no --pace, no --publish") }
            let reader = try StoreReader(directory: data + "/store")
            let rows = try Frames.writeArrow(reader, query, to: try ByteOutput(path: out), layout: arrow, decimals: arrowDecimal.decimals,
                                             metadata: RunMetadata.keyValues(command: "replay", subjects: subjects, query))
            try reader.finishRead(command: "replay")
            if rows == 0 { FileHandle.standardError.write(Data("tickwire replay: \(reader.whyNothing(query, pattern: subjects))\n".utf8)) }
            return
        }
        guard let format = StreamReplaySink.Format(rawValue: format) else {
            throw ValidationError("--format must be jsonl, binary, arrow or arrow-file, not '\(format)'")
        }
        if header && (format != .jsonl || publish != nil) { throw ValidationError("--header is for --format jsonl output") }
        let reader = try StoreReader(directory: data + "/store")
        let sent: UInt64
        if let endpoint = publish {
            let sink = try ZMQReplaySink(endpoint: endpoint, waitForSubscriber: waitSubscriber)
            sent = try Replayer.run(reader, query, pace: pace, into: sink)
        } else {
            let output = try ByteOutput(path: out)
            if header { output.buffer += Array((RunMetadata.jsonHeader(command: "replay", subjects: subjects, query) + "\n").utf8) }
            sent = format == .binary && pace == .max
                ? try Replayer.writeBinary(reader, query, to: output)
                : try Replayer.run(reader, query, pace: pace, into: StreamReplaySink(output, format: format))
        }
        try reader.finishRead(command: "replay")
        if sent == 0 { FileHandle.standardError.write(Data("tickwire replay: \(reader.whyNothing(query, pattern: subjects))\n".utf8)) }
    }
}

/// Publishes a replay on an XPUB socket as the live feed does: frame one the subject, frame two the wire payload.
/// XPUB with no-drop makes a slow subscriber hold the replay back instead of losing history.
final class ZMQReplaySink: ReplaySink {
    private let context = ZMQContext()
    private let socket: ZMQSocket
    private var payload = [UInt8](repeating: 0, count: WireCodec.payloadSize)

    init(endpoint: String, waitForSubscriber seconds: Double) throws {
        socket = try context.socket(.xpub)
        try socket.setOption(69, 1)          // ZMQ_XPUB_NODROP: block at the high-water mark, never drop
        try socket.setLinger(milliseconds: 30_000)
        try socket.bind(endpoint)
        if seconds > 0 {
            // The first subscription message says someone listens; earlier messages would be lost.
            try socket.setReceiveTimeout(milliseconds: Int(seconds * 1000))
            _ = try socket.receive()
        }
    }

    func send(subject: String, subjectSeq: UInt64, event: Event) throws {
        payload.withUnsafeMutableBytes { WireCodec.encode(event, subjectSeq: subjectSeq, into: $0.baseAddress!) }
        try socket.send(subject, more: true)
        try socket.send(payload)
    }

    func finish() throws {
        socket.close()
    }
}
