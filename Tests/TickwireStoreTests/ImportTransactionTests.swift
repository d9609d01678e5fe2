import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

/// A capture in a small text form, `event_time_ns,price` a line, read from a real file: trades of one symbol.
/// A line that is not two integers stops the import with an error naming it (as a feed parser does).
final class LinesSource: EventSource, @unchecked Sendable {
    let name = "lines"
    let path: String
    init(path: String) { self.path = path }

    struct BadLine: Error, CustomStringConvertible {
        let line: Int
        var description: String { "\(line): not event_time_ns,price" }
    }

    func run(into sink: EventSink, stop: StopSignal) throws {
        let id = sink.subjects.intern(text: "MD.XTST.ABC.TRADE")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for (n, line) in text.split(separator: "\n").enumerated() {
            if stop.isRaised { return }
            let f = line.split(separator: ",")
            guard f.count == 2, let at = Int64(f[0]), let price = Int64(f[1]) else { throw BadLine(line: n + 1) }
            sink.emit(.trade(id, price: Price(e8: price), size: Quantity(e8: 100), side: .buy, tradeID: UInt64(n + 1),
                             eventTime: Nanos(at), knownTime: Nanos(at)))
        }
    }

    func counters() -> [(name: String, value: UInt64)] { [] }
}

/// Appends what a source emits to a `StoreWriter` (how a daemon stores a feed): the reference the importer's
/// stores are compared with, and a way to stage by hand.
final class WriterSink: EventSink {
    let writer: StoreWriter
    let stop: StopSignal
    var error: StoreError?
    var subjects: SubjectTable { writer.subjects }

    init(writer: StoreWriter, stop: StopSignal) { self.writer = writer; self.stop = stop }

    func emit(_ event: Event) {
        guard error == nil else { return }
        do { try writer.append(event) } catch { self.error = error; stop.raise() }
    }
}

@Suite(.timeLimit(.minutes(5))) struct ImportTransactionTests {
    func capture(_ dir: String, lines n: Int, badAt: Int? = nil, start: Int64 = sessionOpen.rawValue) throws -> String {
        let path = dir + "-capture.csv"
        var text = ""
        for i in 0..<n { text += i == badAt ? "garbage\n" : "\(start + Int64(i) * 1_000_000),\(100 + i % 7)\n" }
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    func count(_ store: String) throws -> Int {
        try read(store, from: Nanos(0), to: Nanos(Int64.max / 2)).count
    }

    /// Nothing of an import but what a finished one leaves: no staging directory, no plan.
    func noLeftovers(_ store: String) -> Bool {
        !FS.list(store).contains { $0.hasPrefix(StoreImporter.stagingPrefix) }
            && !FS.exists(StoreImporter.importsDirectory(store) + "/" + StoreImporter.pendingName)
    }

    @Test func theSameFileImportedTwiceIsStoredOnceAndTheSecondRunSaysSo() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let path = try capture(dir, lines: 5000); defer { try? FileManager.default.removeItem(atPath: path) }
        let store = dir + "/store"
        let first = try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                                   identity: .init(kind: "lines", path: path), heldRows: 700)
        #expect(first.events == 5000 && first.alreadyImported == nil)
        let second = try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                                    identity: .init(kind: "lines", path: path), heldRows: 700)
        #expect(second.events == 0)
        #expect(second.alreadyImported?.contains("5000 events") == true)
        #expect(try count(store) == 5000)
        // Other bytes, or the same bytes read another way, are another import.
        try (try String(contentsOfFile: path, encoding: .utf8) + "\(sessionOpen.rawValue + 86_400_000_000_000),1\n")
            .write(toFile: path, atomically: false, encoding: .utf8)
        #expect(try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                               identity: .init(kind: "lines", path: path)).alreadyImported == nil)
        #expect(try StoreImporter.Identity(kind: "lines", path: path) != StoreImporter.Identity(kind: "lines --date 2020-01-01", path: path))
        #expect(noLeftovers(store))
    }

    /// The content digest is XXH3-128, its high half first (the empty input's hash is xxHash's published one),
    /// and the file read a buffer at a time gives the digest of its bytes whole, at buffer boundaries and beside.
    @Test func theContentDigestIsXXH3Of128Bits() throws {
        #expect([UInt8]().withUnsafeBytes { StoreImporter.Identity.contentDigest($0) } == "x99aa06d3014798d86001c324468d497f")
        let a = Array("tickwire".utf8), b = Array("tickwirf".utf8)
        #expect(a.withUnsafeBytes { StoreImporter.Identity.contentDigest($0) } != b.withUnsafeBytes { StoreImporter.Identity.contentDigest($0) })
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        var rng = SplitMix(seed: 5)
        for count in [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20] {
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next(below: 256)) }
            let path = dir + "/file-\(count)"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let read = try StoreImporter.Identity.contentDigest(OwnedFile(path: path, flags: O_RDONLY))
            #expect(read == bytes.withUnsafeBytes { StoreImporter.Identity.contentDigest($0) }, "\(count) bytes")
        }
    }

    /// An import onto a full disk (a real tmpfs) fails naming the write that found no space, leaves nothing of
    /// itself and loses nothing stored before; once space returns, the same file imports whole.
    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func anImportOntoAFullDiskLeavesNothingAndSucceedsOnceSpaceReturns() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let small = try capture(dir + "-small", lines: 300, start: sessionOpen.rawValue - Nanos.perDay)
        let big = try capture(dir + "-big", lines: 400_000)
        defer { for p in [small, big] { try? FileManager.default.removeItem(atPath: p) } }
        try withSmallTmpfs(size: "4m") { mount in
            let store = mount + "/store"
            try StoreImporter.importEvents(from: LinesSource(path: small), directory: store, identity: .init(kind: "lines", path: small))
            let ballast = mount + "/ballast"
            try Data(count: 3_900 << 10).write(to: URL(fileURLWithPath: ballast))
            do {
                try StoreImporter.importEvents(from: LinesSource(path: big), directory: store, identity: .init(kind: "lines", path: big))
                Issue.record("the import fitted in what was left")
            } catch let e as StoreError {
                guard case .io(_, _, let code) = e else { Issue.record("\(e)"); return }
                #expect(code == ENOSPC, "\(e)")
            }
            #expect(noLeftovers(store))
            #expect(try count(store) == 300)
            try FileManager.default.removeItem(atPath: ballast)
            let again = try StoreImporter.importEvents(from: LinesSource(path: big), directory: store, identity: .init(kind: "lines", path: big))
            #expect(again.events == 400_000 && again.alreadyImported == nil)
            #expect(try count(store) == 400_300)
        }
    }

    /// A file that cannot be read for its hash (here a directory: open succeeds, read fails) is an error naming the
    /// read and the path, not a key.
    @Test func aFileThatCannotBeReadHasNoKey() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try FS.makeDirectories(dir + "/not-a-file")
        let identity = try StoreImporter.Identity(kind: "lines", path: dir + "/not-a-file")
        do {
            _ = try identity.key()
            Issue.record("a directory got a key")
        } catch {
            guard case .io(let operation, let path, let code) = error else { Issue.record("\(error)"); return }
            #expect(operation == "read" && path == dir + "/not-a-file" && code == EISDIR)
        }
    }

    /// The legacy digest (keys recorded before XXH3) is the key those imports recorded: CRC-32C of every byte, and
    /// the hash over the 8-byte words, then the tail bytes, at every tail length.
    @Test func theLegacyDigestIsTheTwoPassOne() {
        var rng = SplitMix(seed: 11)
        for count in Array(0...40) + [4_096, 100_003] {
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next(below: 256)) }
            var h: UInt64 = 0x9E37_79B9_7F4A_7C15
            bytes.withUnsafeBytes { p in
                for i in 0..<count / 8 {
                    h = (h ^ p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
                    h ^= h >> 29
                }
                for i in (count / 8 * 8)..<count { h = (h ^ UInt64(p[i])) &* 0xC4CE_B9FE_1A85_EC53 }
            }
            let want = StoreImporter.Identity.hex(CRC32C.of(bytes)) + "-" + StoreImporter.Identity.hex(h)
            #expect(bytes.withUnsafeBytes { StoreImporter.Identity.legacyDigest($0) } == want, "\(count) bytes")
        }
    }

    /// A store whose import was recorded under the legacy key (before XXH3) still knows the file: importing it
    /// again stores nothing. Another file of the same size beside such a record is imported.
    @Test func anImportRecordedUnderTheLegacyKeyIsStillKnown() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let store = dir + "/store"
        let path = try capture(dir, lines: 2000); defer { try? FileManager.default.removeItem(atPath: path) }
        let identity = try StoreImporter.Identity(kind: "lines", path: path)
        #expect(try StoreImporter.importEvents(from: LinesSource(path: path), directory: store, identity: identity).events == 2000)
        // What an older Tickwire left: the same record under the legacy key.
        let legacyKey = try identity.legacyKey()
        #expect(try identity.key().hasPrefix(identity.prefix + "x") && legacyKey.hasPrefix(identity.prefix) && !legacyKey.contains("-x"))
        try FS.rename(StoreImporter.doneFile(store, try identity.key()), StoreImporter.doneFile(store, legacyKey))
        let again = try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                                   identity: .init(kind: "lines", path: path))
        #expect(again.events == 0 && again.alreadyImported?.contains("2000 events") == true)
        #expect(try count(store) == 2000)
        // One price digit changed: the same size and kind, other bytes.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = String(text.dropLast(2)) + (text.dropLast().last == "0" ? "1" : "0") + "\n"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        #expect(try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                               identity: .init(kind: "lines", path: path)).events == 2000)
    }

    /// The kind and size begin the key and are known before the hash: a file of the same size and other bytes is
    /// waited for and compared whole, and imported; the same bytes again are not.
    @Test func anotherFileOfTheSameSizeIsAnotherImport() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let store = dir + "/store"
        let path = try capture(dir, lines: 3000); defer { try? FileManager.default.removeItem(atPath: path) }
        let first = try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                                   identity: .init(kind: "lines", path: path))
        #expect(first.events == 3000)
        // One price digit changed: the same size, other bytes.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = String(text.dropLast(2)) + (text.dropLast().last == "0" ? "1" : "0") + "\n"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        let other = try StoreImporter.Identity(kind: "lines", path: path)
        #expect(StoreImporter.mayBeDone(store, other))
        #expect(try StoreImporter.importEvents(from: LinesSource(path: path), directory: store, identity: other).events == 3000)
        #expect(try StoreImporter.importEvents(from: LinesSource(path: path), directory: store,
                                               identity: .init(kind: "lines", path: path)).alreadyImported != nil)
    }

    @Test func aBadLineMidwayLeavesNothingBehind() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let store = dir + "/store"
        // Something already stored stays exactly as it was.
        let good = try capture(dir + "-good", lines: 300, start: sessionOpen.rawValue - Nanos.perDay)
        defer { try? FileManager.default.removeItem(atPath: good) }
        try StoreImporter.importEvents(from: LinesSource(path: good), directory: store)
        let bad = try capture(dir, lines: 5000, badAt: 4321); defer { try? FileManager.default.removeItem(atPath: bad) }
        #expect(throws: LinesSource.BadLine.self) {
            try StoreImporter.importEvents(from: LinesSource(path: bad), directory: store,
                                           identity: .init(kind: "lines", path: bad), heldRows: 500)
        }
        #expect(try count(store) == 300)
        #expect(Layout.partitions(in: store).count == 1)
        #expect(noLeftovers(store))
        // Not recorded as imported: fixed, it imports.
        _ = try capture(dir, lines: 5000)
        #expect(try StoreImporter.importEvents(from: LinesSource(path: bad), directory: store,
                                               identity: .init(kind: "lines", path: bad)).events == 5000)
        #expect(try count(store) == 5300)
    }

    /// A child process importing is killed with SIGKILL: the next import (or any recovery) leaves the store as
    /// it was before, with no staging left.
    @Test func aKilledImportLeavesNothingBehind() async throws {
        let dir = "/tmp/tickwire-store-tests/import-kill-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { cleanUp(dir) }
        let path = try capture(dir + "/in", lines: 400_000)
        await #expect(processExitsWith: .signal(SIGKILL)) {
            let dir = "/tmp/tickwire-store-tests/import-kill-\(getppid())"
            let killer = Thread {
                usleep(UInt32.random(in: 50_000...600_000))
                kill(getpid(), SIGKILL)
            }
            killer.start()
            _ = try? StoreImporter.importEvents(from: LinesSource(path: dir + "/in-capture.csv"), directory: dir + "/store",
                                                heldRows: 50_000)
            while true { usleep(100_000) }
        }
        _ = path
        let store = dir + "/store"
        guard FS.isDirectory(store) else { return }
        try StoreImporter.recover(store: store)
        #expect(noLeftovers(store))
        // Either nothing, or the whole import (killed after its publish): never a part of it.
        let n = try count(store)
        #expect(n == 0 || n == 400_000, "\(n) events")
    }

    /// A crash after the plan of a publish was made durable and some renames done: the next import completes it.
    @Test func aPublishCutShortIsCompletedOnTheNextOpen() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let store = dir + "/store"
        let path = try capture(dir, lines: 3000); defer { try? FileManager.default.removeItem(atPath: path) }
        // Staged as an import would: three days' partitions... here one day in chunks.
        let staging = store + "/" + StoreImporter.stagingPrefix + "test"
        let w = try StoreWriter(directory: staging, subjects: SubjectTable(), blockEvents: 100, chunkEvents: 1000, compactRows: 10)
        try LinesSource(path: path).run(into: WriterSink(writer: w, stop: StopSignal()), stop: StopSignal())
        try w.seal()
        try w.close()
        let identity = try StoreImporter.Identity(kind: "lines", path: path)
        let renames = try StoreImporter.writePlan(staging: staging, store: store, keys: Layout.partitions(in: staging),
                                                  done: StoreImporter.doneFile(store, try identity.key()), record: "test import")
        #expect(renames.count == 3)
        try FS.makeDirectories(String(renames[0].1[..<renames[0].1.lastIndex(of: "/")!]))
        try FS.rename(renames[0].0, renames[0].1)
        // The crash. Then an import of the same file: completed and recorded, so not stored twice.
        let again = try StoreImporter.importEvents(from: LinesSource(path: path), directory: store, identity: identity)
        #expect(again.alreadyImported == "test import\n")
        #expect(try count(store) == 3000)
        #expect(noLeftovers(store))
    }
}
