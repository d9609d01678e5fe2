#if canImport(Glibc)
import Glibc
#endif
import TickwireCore

/// A sink that prints each event as `tickwire tail` would: JSON lines or text, numbered by `WireSequencer`
/// (`seq` per stream, `subject_seq` per subject), so a decoded file and a live tail read alike.
public final class PrintingSink: EventSink {
    public enum Format: String, Sendable, CaseIterable { case jsonl, text, none }

    public let subjects: SubjectTable
    public let format: Format
    public private(set) var count: UInt64 = 0
    var sequencer = WireSequencer()
    var line: [UInt8] = []
    let fd: Int32

    /// - Parameter fd: where to write (standard output by default); not closed here. Output is buffered in
    ///   64 KiB writes; call `flush()` at the end.
    public init(format: Format, subjects: SubjectTable = SubjectTable(), fd: Int32 = 1) {
        self.format = format; self.subjects = subjects; self.fd = fd
        line.reserveCapacity(1 << 16)
    }

    public func emit(_ event: Event) {
        count &+= 1
        let (seq, subjectSeq) = sequencer.next(event.subjectID, subject: subjects.entry(event.subjectID))
        var e = event
        e.seq = seq
        switch format {
        case .none: return
        case .jsonl:
            EventText.appendJSON(subject: subjects.text(event.subjectID), subjectSeq: subjectSeq, event: e, to: &line)
        case .text:
            line += EventText.textLine(WireEvent(subject: subjects.text(event.subjectID), subjectSeq: subjectSeq, event: e)).utf8
        }
        line.append(UInt8(ascii: "\n"))
        if line.count > (1 << 16) - 512 { flush() }
    }

    /// Writes what is buffered. The corresponding C function is `write`.
    public func flush() {
        line.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n <= 0 { if errno == EINTR { continue }; break }   // a closed pipe: stop writing, never crash
                done += n
            }
        }
        line.removeAll(keepingCapacity: true)
    }
}

/// The `--stats` report of a source: its counters, one `name value` line each.
public enum FeedStats {
    public static func text(_ source: EventSource, events: UInt64) -> String {
        var lines = ["source \(source.name)", "events \(events)"]
        for (name, value) in source.counters() { lines.append("\(name) \(value)") }
        return lines.joined(separator: "\n")
    }
}
