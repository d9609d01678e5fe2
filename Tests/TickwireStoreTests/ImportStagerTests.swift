import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

/// Emits a fixed list of events (their ids in the table the importer is given).
final class ListSource: EventSource, @unchecked Sendable {
    let name = "list"
    let events: [Event]
    init(_ events: [Event]) { self.events = events }
    func run(into sink: EventSink, stop: StopSignal) throws {
        // Half one at a time, half in batches, as the CSV sources hand them over.
        let half = events.count / 2
        for e in events[..<half] { sink.emit(e) }
        events[half...].withUnsafeBufferPointer { all in
            var i = 0
            while i < all.count {
                let n = min(777, all.count - i)
                sink.emit(batch: UnsafeBufferPointer(rebasing: all[i..<i + n]))
                i += n
            }
        }
    }
    func counters() -> [(name: String, value: UInt64)] { [] }
}

/// The importer seals from memory, without the append logs a `StoreWriter` writes: what it stores must be what
/// the writer's logs sealed would be — the same column bytes where a date is sealed whole, the same rows read
/// back where it stays in chunks.
@Suite(.timeLimit(.minutes(5))) struct ImportStagerTests {
    /// Each partition's files (but `meta`, which records the generation) of a store whose partitions are each
    /// one sealed piece.
    func sealedFiles(_ store: String) throws -> [String: [UInt8]] {
        var out = [String: [UInt8]]()
        for key in Layout.partitions(in: store) {
            let dir = store + "/" + key.relativePath
            let files = Layout.inspect(dir)
            let pieces = (files.sealedGeneration.map { [Layout.segmentName($0)] } ?? []) + files.liveChunks.map(Layout.chunkName)
            #expect(pieces.count == 1 && files.liveLogs.isEmpty, "\(key): \(pieces)")
            for name in SegmentImage.fileNames {
                out[key.relativePath + "/" + name] = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + pieces[0] + "/" + name)))
            }
        }
        return out
    }

    /// Three dates, two roots, many subjects interleaved; trades re-sent later (corrections), a bust, and rows
    /// out of time order within a subject.
    func market(_ ev: Events, rows: Int) -> [Event] {
        var out = [Event]()
        var rng = SplitMix(seed: 7)
        for i in 0..<rows {
            let day = Int64(i * 3 / rows) * Nanos.perDay
            let at = Nanos(sessionOpen.rawValue + day + Int64(i) * 1_000_000 - Int64(rng.next(below: 3)) * 1_000_000)
            let venue = i % 5 == 0 ? "XNYS" : "XNAS"
            let symbol = "S\(rng.next(below: 40))"
            if i % 3 == 0 {
                out.append(ev.quote("MD.\(venue).\(symbol).QUOTE", at: at, known: Nanos(at.rawValue + 20_000), bid: 100, ask: 101))
            } else {
                out.append(ev.trade("MD.\(venue).\(symbol).TRADE", at: at, known: Nanos(at.rawValue + 30_000),
                                    price: 100 + Int64(i % 7), id: UInt64(i)))
                if i % 97 == 0 {   // re-sent a second later, one tick up: a correction
                    out.append(ev.trade("MD.\(venue).\(symbol).TRADE", at: at, known: Nanos(at.rawValue + Nanos.perSecond),
                                        price: 101 + Int64(i % 7), id: UInt64(i)))
                }
                if i % 1013 == 0 { out.append(ev.bust("MD.\(venue).\(symbol).BUST", at: at, known: Nanos(at.rawValue + 2 * Nanos.perSecond), id: UInt64(i))) }
            }
        }
        return out
    }

    func everything(_ store: String) throws -> [StoredEvent] {
        try read(store, from: Nanos(0), to: Nanos(Int64.max / 2))
    }

    /// 40,000 rows: the larger partitions are encoded on two threads (`SegmentImage.parallelRows`).
    @Test(arguments: [1_000_000, 9_000, 700])
    func datesSealedWholeHaveTheWritersColumnBytes(heldRows: Int) throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let ev = Events()
        let events = market(ev, rows: 40_000)
        try ev.write(events, to: dir + "/writer")
        try StoreImporter.importEvents(from: ListSource(events), directory: dir + "/import", subjects: ev.table, heldRows: heldRows)
        let a = try sealedFiles(dir + "/writer"), b = try sealedFiles(dir + "/import")
        #expect(a.count == 6 * SegmentImage.fileNames.count)
        #expect(a.keys.sorted() == b.keys.sorted())
        for (name, bytes) in a { #expect(b[name] == bytes, "\(name)") }
        #expect(try everything(dir + "/import") == everything(dir + "/writer"))
    }

    /// Rows a stager can encode as they arrive, and rows that stop it midway: per date, six subjects of 3,000
    /// rows interleaved in time order, among them one whose rows go out of order after two blocks, one with a
    /// correction (a trade id again at its time) after one block, one of quotes; on the second date a bust after
    /// every subject has streamed blocks (the whole partition is staged from there).
    func streamable(_ ev: Events) -> [Event] {
        var out = [Event]()
        for day in 0..<2 {
            let base = sessionOpen.rawValue + Int64(day) * Nanos.perDay
            for i in 0..<18_000 {
                let s = i % 6, n = i / 6
                let at = Nanos(base + Int64(i) * 1_000_000 - (s == 3 && n == 2_200 ? 50_000_000 : 0))
                let known = Nanos(at.rawValue + 40_000)
                if s == 5 {
                    out.append(ev.quote("MD.XNAS.S5.QUOTE", at: at, known: known, bid: 100 + Int64(n % 9), ask: 102))
                    continue
                }
                let id = UInt64(day * 1_000_000 + i)
                out.append(ev.trade("MD.XNAS.S\(s).TRADE", at: at, known: known, price: 100 + Int64(n % 11), id: id))
                if s == 4 && n == 1_500 {
                    out.append(ev.trade("MD.XNAS.S4.TRADE", at: at, known: Nanos(known.rawValue + 1_000), price: 99, id: id))
                }
                if day == 1 && i == 15_000 {
                    out.append(ev.bust("MD.XNAS.S1.BUST", at: at, known: Nanos(known.rawValue + 5_000), id: UInt64(day * 1_000_000 + 13)))
                }
            }
        }
        return out
    }

    /// Streamed blocks, blocks decoded back and staged rows seal to the writer's bytes, whole or in chunks.
    @Test(arguments: [1_000_000, 9_000, 2_500])
    func streamedAndStagedSubjectsHaveTheWritersColumnBytes(heldRows: Int) throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let ev = Events()
        let events = streamable(ev)
        try ev.write(events, to: dir + "/writer")
        let stop = StopSignal()
        let stager = ImportStager(directory: dir + "/import", subjects: ev.table, heldRows: heldRows, compactRows: 16_000_000, stop: stop)
        try ListSource(events).run(into: stager, stop: stop)
        try stager.finish()
        if heldRows > events.count {   // (chunks of a few thousand rows seal before most subjects fill a block)
            #expect(stager.blocksStreamed > 20 && stager.blocksDecoded > 5, "\(stager.blocksStreamed) streamed, \(stager.blocksDecoded) decoded")
        }
        let a = try sealedFiles(dir + "/writer"), b = try sealedFiles(dir + "/import")
        #expect(a.count == 2 * SegmentImage.fileNames.count)
        #expect(a.keys.sorted() == b.keys.sorted())
        for (name, bytes) in a { #expect(b[name] == bytes, "\(name)") }
        #expect(try everything(dir + "/import") == everything(dir + "/writer"))
    }

    /// Over `compactRows` a date stays in chunks (cut elsewhere than the writer's logs were): the rows, versions
    /// and as-known-at reads are the same.
    @Test func datesLeftInChunksReadTheSame() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let ev = Events()
        let events = market(ev, rows: 12_000)
        try ev.write(events, to: dir + "/writer")
        try StoreImporter.importEvents(from: ListSource(events), directory: dir + "/import", subjects: ev.table,
                                       heldRows: 1_500, compactRows: 1_000)
        #expect(Layout.chunkCount(dir + "/import") > 6)
        #expect(try everything(dir + "/import") == everything(dir + "/writer"))
        for k in [0.5, 1.5, 2000.0] {
            let asOf = Nanos(sessionOpen.rawValue + Int64(k * 1e9))
            #expect(try read(dir + "/import", from: Nanos(0), to: Nanos(Int64.max / 2), asOf: asOf)
                    == read(dir + "/writer", from: Nanos(0), to: Nanos(Int64.max / 2), asOf: asOf))
        }
    }

    /// The real tardis capture: the same column bytes as the writer's seal.
    @Test func theTardisCaptureHasTheWritersColumnBytes() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let source = try TardisFixtureSource()
        let table = SubjectTable()
        let w = try StoreWriter(directory: dir + "/writer", subjects: table)
        let sink = WriterSink(writer: w, stop: StopSignal())
        try source.run(into: sink, stop: StopSignal())
        try w.seal()
        try w.close()
        try StoreImporter.importEvents(from: source, directory: dir + "/import")
        let a = try sealedFiles(dir + "/writer"), b = try sealedFiles(dir + "/import")
        #expect(!a.isEmpty && a == b)
    }

    /// Rows past a reservation (the fallback when the full one is refused) are moved to a larger one intact, and
    /// `removeAll` leaves the reservation usable.
    @Test func rowsGrownPastTheirReservationKeepEveryRow() {
        let ev = Events()
        let events = market(ev, rows: 5_000)
        let rows = Rows<Event>(capacity: 3)
        for e in events { rows.append(e) }
        #expect(rows.withRows { Array($0) } == events)
        rows.removeAll()
        rows.append(events[7])
        #expect(rows.withRows { Array($0) } == [events[7]])
    }

    /// Encoding on two threads writes the bytes one thread does (corrections and busts in both halves).
    @Test func columnsEncodedInTwoPartsAreTheOnePassBytes() {
        let ev = Events()
        let events = market(ev, rows: 20_000)
        var texts = [String]()
        for id in 0..<Int(events.map(\.subjectID).max()! + 1) { texts.append(ev.table.text(SubjectID(id))) }
        let one = SegmentImage.build(subjects: texts, events: events, generation: 1, parallelRows: .max)
        let two = SegmentImage.build(subjects: texts, events: events, generation: 1, parallelRows: 1)
        #expect(one.files["valid_until"]!.count > 8 + 16 * 100)
        #expect(one.files == two.files)
    }
}
