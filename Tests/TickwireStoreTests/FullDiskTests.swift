import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// The store writer on a full disk (a real tmpfs; mounting needs root, elsewhere the tests are skipped, not faked).
@Suite(.timeLimit(.minutes(5))) struct FullDiskTests {
    let ev = Events()

    /// Quote `i`: one subject, a microsecond apart, the ring sequence `i` and bid `i`, so each is recognisable.
    func quote(_ i: Int) -> Event {
        var e = ev.quote("MD.XNAS.AAPL.QUOTE", at: t(Double(i) * 1e-6), known: t(Double(i) * 1e-6), bid: Int64(i), ask: Int64(i) + 1)
        e.seq = UInt64(i)
        return e
    }

    /// ENOSPC under load, then space freed: nothing crashes, every event is either replayable or counted lost
    /// (with its range), the log holds only whole blocks, writing resumes by itself, and a reopened writer finds
    /// nothing to cut and appends after the stored events.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullDiskLosesOnlyCountedEventsAndWritingResumes() throws {
        try withSmallTmpfs(size: "1m") { mount in
            let ballast = mount + "/ballast"
            try Data(count: 512 << 10).write(to: URL(fileURLWithPath: ballast))
            let dir = mount + "/store"
            let incidents = IncidentLog()
            let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 256, report: incidents.add)
            var i = 0
            var errors: [StoreError] = []
            func append(_ e: Event) { do { try w.append(e) } catch { errors.append(error) } }
            // Fill the disk.
            while errors.isEmpty && i < 1_000_000 { append(quote(i)); i += 1 }
            guard case .io("writev", let path, ENOSPC) = errors.first else {
                Issue.record("expected ENOSPC from writev, got \(errors)"); return
            }
            #expect(path.hasSuffix("/2026-01-05/MD.XNAS/" + Layout.logName(1)))
            // Under load while full: every event is counted lost; the writer throws again at most once a second.
            let fullUntil = Date().addingTimeInterval(0.3)
            while Date() < fullUntil { append(quote(i)); i += 1 }
            #expect(errors.count == 1)
            #expect(w.lostEvents > 0 && incidents.all.isEmpty)
            #expect(throws: StoreError.self) { try w.flush() }
            // Space returns: the first write after the retry interval works, and the loss is reported with its range.
            try FileManager.default.removeItem(atPath: ballast)
            let deadline = Date().addingTimeInterval(5)
            while incidents.all.isEmpty && Date() < deadline { append(quote(i)); i += 1 }
            guard case .resumed(let lost) = incidents.all.first else { Issue.record("no resume: \(incidents.all)"); return }
            #expect(lost.count == w.lostEvents)
            // One outage of one partition: the lost events are one run of sequences.
            #expect(lost.lastSeq - lost.firstSeq + 1 == lost.count)
            let errorsBefore = errors.count
            for _ in 0..<1000 { append(quote(i)); i += 1 }
            try w.flush()
            #expect(errors.count == errorsBefore)
            try w.close()
            #expect(w.appended == UInt64(i))

            // The log holds whole blocks only: the failed write was cut back before the next block.
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            let log = bytes.withUnsafeBytes { AppendLog.read($0) }
            #expect(log.tornBytes == 0 && log.validBytes == bytes.count)
            let expected = (0..<i).filter { UInt64($0) < lost.firstSeq || UInt64($0) > lost.lastSeq }
            func bids(_ events: [StoredEvent]) -> [Int] { events.map { Int($0.event.a / 1_000_000) } }
            let stored = bids(try read(dir, to: t(3600)))
            #expect(stored.count == i - Int(w.lostEvents))
            #expect(stored.elementsEqual(expected), "the stored events are exactly the ones not counted lost")
            // Reopened: nothing to cut, and new events go after the stored ones.
            let w2 = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 256, report: incidents.add)
            try w2.append(quote(i))
            try w2.close()
            #expect(w2.tornTailsCut == 0 && incidents.all.count == 1)
            #expect(try bids(read(dir, to: t(3600))).elementsEqual(expected + [i]))
        }
    }

    /// Two partitions filling the disk together, space freed twice: what one partition had staged when the
    /// other's write failed is written once writing resumes, and every event is stored exactly once or counted.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullDiskWithTwoPartitionsStoresOrCountsEveryEvent() throws {
        try withSmallTmpfs(size: "1m") { mount in
            let ballast = (0..<2).map { mount + "/ballast\($0)" }
            for b in ballast { try Data(count: 256 << 10).write(to: URL(fileURLWithPath: b)) }
            let dir = mount + "/store"
            let incidents = IncidentLog()
            let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 256, report: incidents.add)
            var i = 0
            func append() {
                var e = ev.quote(i % 2 == 0 ? "MD.XNAS.AAPL.QUOTE" : "MD.XNYS.IBM.QUOTE", at: t(Double(i) * 1e-6),
                                 known: t(Double(i) * 1e-6), bid: Int64(i), ask: Int64(i) + 1)
                e.seq = UInt64(i)
                i += 1
                do { try w.append(e) } catch {}
            }
            for (n, b) in ballast.enumerated() {
                let failures = w.writeFailures
                while w.writeFailures == failures && i < 10_000_000 { append() }      // the disk fills (again)
                for _ in 0..<10_000 { append() }
                try FileManager.default.removeItem(atPath: b)
                let deadline = Date().addingTimeInterval(5)
                while incidents.all.count == n && Date() < deadline { append() }
            }
            for _ in 0..<500 { append() }
            try w.close()
            let resumed = incidents.all.compactMap { if case .resumed(let lost) = $0 { lost.count } else { nil } }
            #expect(resumed.count == 2 && resumed.reduce(0, +) == w.lostEvents)
            let stored = try read(dir, to: t(3600)).map { Int($0.event.a / 1_000_000) }
            #expect(stored.count + Int(w.lostEvents) == i)
            #expect(Set(stored).count == stored.count && stored.allSatisfy { $0 < i })
            // The last 500, appended after writing resumed, are all there.
            #expect(Set(stored).isSuperset(of: i - 500..<i))
        }
    }
}

extension FullDiskTests {
    /// An Arrow export onto a full disk fails naming the file and ENOSPC, as a stream and as a file, whether the
    /// write that failed was a batch's body going out behind the next batch (`ByteOutput.writeBehind`) or a
    /// buffered message.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func anArrowExportOntoAFullDiskFailsNamingENOSPC() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write((0..<200_000).map { quote($0) }, to: dir)
        let q = try StoreQuery(subjects: SubjectPattern(">"), from: t(-1), to: t(3600))
        try withSmallTmpfs(size: "2m") { mount in
            for layout in [ArrowWriter.Layout.stream, .file] {
                let path = mount + "/out-\(layout)"
                #expect {
                    try Frames.writeArrow(StoreReader(directory: dir), q, to: ByteOutput(path: path), layout: layout)
                } throws: { error in
                    guard case StoreError.io(let operation, let failed, let errno) = error else { return false }
                    return operation == "write" && failed == path && errno == ENOSPC
                }
                try FileManager.default.removeItem(atPath: path)
            }
            // A piece written behind alone: its failure is the next call's error.
            let path = mount + "/piece", out = try ByteOutput(path: path)
            try [UInt8](repeating: 1, count: 4 << 20).withUnsafeBytes { piece in
                try out.writeBehind(piece)
                #expect(throws: StoreError.io(operation: "write", path: path, errno: ENOSPC)) { try out.settle() }
            }
        }
    }
}

/// Collects a writer's incidents.
final class IncidentLog: @unchecked Sendable {
    private let lock = NSLock()
    private var incidents: [StoreIncident] = []
    func add(_ incident: StoreIncident) { lock.lock(); incidents.append(incident); lock.unlock() }
    var all: [StoreIncident] { lock.lock(); defer { lock.unlock() }; return incidents }
}
