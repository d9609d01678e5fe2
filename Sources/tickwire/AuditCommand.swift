import ArgumentParser
import Foundation
import TickwireDaemon
import TickwireJournal

/// `tickwire audit …`: read-only checks and views of the trade journal (safe while the daemon runs).
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify and read the trade journal (verify also checks the store's corrections logs).",
        subcommands: [Verify.self, Tail.self, Show.self, Export.self, Repair.self])

    struct DataOption: ParsableArguments {
        @Option(help: "Data directory (the journal is DIR/journal).") var data = "./tickwire-data"
        var journal: String { data + "/journal" }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every CRC32C and the whole hash chain; print the count and the head hash. Exits 1 on damage.")
        @OptionGroup var options: DataOption

        func run() throws {
            let corrections = try CorrectionsVerify.run(data: options.data)   // the store's corrections logs (CorrectCommand.swift)
            if let c = corrections.line, !FileManager.default.fileExists(atPath: options.journal) {
                print(c)
                if !corrections.ok { throw ExitCode(1) } else { return }
            }
            let v = try JournalAudit.verify(directory: options.journal)
            var line = "{\"ok\":\(v.ok),\"records\":\(v.records),\"segments\":\(v.segments),\"last_seq\":\(v.lastSeq),\"head_hash\":\"\(v.headHash.hex)\""
            switch v.ackMark {
            case .valid(let m): line += ",\"acked_seq\":\(m.seq)"
            case .missing: line += ",\"ack_mark\":\"missing\""
            case .damaged(let why): line += ",\"ack_mark\":\(TradeWire.jsonQuoted("damaged: " + why))"
            }
            if v.tornTailBytes > 0 { line += ",\"torn_tail_bytes\":\(v.tornTailBytes)" }
            if let c = v.corruption {
                line += ",\"corrupt\":{\"seq\":\(c.seq),\"segment\":\"\(c.segment)\",\"offset\":\(c.offset),\"reason\":\(TradeWire.jsonQuoted(c.reason))}"
            }
            if let lost = v.lostAcknowledged {
                line += ",\"lost_acknowledged\":{\"from\":\(lost.lowerBound),\"to\":\(lost.upperBound)}"
            }
            print(line + "}")
            if let c = corrections.line { print(c) }
            if !v.ok || !corrections.ok { throw ExitCode(1) }
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the last N records as JSON lines.")
        @OptionGroup var options: DataOption
        @Option(name: [.customShort("n"), .long], help: "How many.") var count = 10
        func run() throws {
            for r in try JournalAudit.tail(directory: options.journal, count: count) { print(line(r)) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one record by sequence.")
        @OptionGroup var options: DataOption
        @Argument(help: "The sequence.") var seq: UInt64
        func run() throws {
            guard let r = try JournalAudit.show(directory: options.journal, seq: seq) else {
                throw ValidationError("no record with sequence \(seq) in \(options.journal)")
            }
            print(line(r))
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every record, one JSON object a line.")
        @OptionGroup var options: DataOption
        @Option(help: "Output format (jsonl).") var format = "jsonl"
        @Option(help: "First sequence.") var from: UInt64 = 1
        func validate() throws {
            guard format == "jsonl" else { throw ValidationError("--format must be jsonl") }
        }
        func run() throws {
            try JournalAudit.forEach(directory: options.journal, from: from) { print(line($0)) }
        }
    }
}

extension AuditCommand {
    /// `tickwire audit repair --truncate`: the operator's word that lets a damaged journal open again.
    struct Repair: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cut a damaged journal back to its last good record (the daemon must be stopped).",
            discussion: """
                Without --truncate, only says what would be cut (as 'audit verify'). With it: keeps every record \
                before the damage; copies the damaged segment and moves every later one to journal/quarantine/ \
                (nothing is deleted); writes a new ack mark; prints what was given up, acknowledged trades \
                included. New trades then continue from the last good record. Exits 0 when the journal opens.
                """)
        @OptionGroup var options: DataOption
        @Flag(help: "Cut at the damage (an operator's decision: acknowledged trades after it leave the journal).")
        var truncate = false

        func run() throws {
            guard truncate else {
                let v = try JournalAudit.verify(directory: options.journal)
                if let c = v.corruption {
                    print("damage: \(c)")
                    if let lost = v.lostAcknowledged { print("acknowledged records \(lost.lowerBound)…\(lost.upperBound) would be given up") }
                    print("run again with --truncate to cut the journal back to record \(v.lastSeq) (copies go to quarantine/)")
                    throw ExitCode(1)
                }
                print("journal is whole: \(v.records) records through \(v.lastSeq); nothing to repair")
                return
            }
            var opts = JournalOptions()
            opts.onCorruption = .truncate
            opts.preExtendSegments = false
            let journal = try Journal(directory: options.journal, options: opts)
            let r = journal.recovery
            journal.close()
            var line = "{\"records\":\(r.records),\"last_seq\":\(journal.durableSequence)"
            if let c = r.skippedCorruption {
                line += ",\"cut\":{\"seq\":\(c.seq),\"segment\":\"\(c.segment)\",\"offset\":\(c.offset),\"reason\":\(TradeWire.jsonQuoted(c.reason))}"
            }
            if let lost = r.lostAcknowledged { line += ",\"lost_acknowledged\":{\"from\":\(lost.lowerBound),\"to\":\(lost.upperBound)}" }
            if !r.quarantined.isEmpty { line += ",\"quarantined\":[" + r.quarantined.map { "\"\($0)\"" }.joined(separator: ",") + "]" }
            if r.truncatedBytes > 0 { line += ",\"torn_tail_bytes\":\(r.truncatedBytes)" }
            print(line + "}")
        }
    }
}

/// A record as JSON, with the trade decoded when the payload is one.
private func line(_ r: JournalRecord) -> String {
    JournalAudit.jsonLine(r, extra: TradeWire.auditFields(r.payload))
}
