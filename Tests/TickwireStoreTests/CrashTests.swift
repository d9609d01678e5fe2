import Foundation
import Synchronization
import Testing
import TickwireCore
@testable import TickwireStore

@Suite struct CrashTests {
    let ev = Events()

    func quotes(_ n: Int, day: Double = 0, from start: Int = 0) -> [Event] {
        (start..<start + n).map { ev.quote("MD.XNAS.AAPL.QUOTE", at: t(day * 86_400 + Double($0) * 0.001), known: t(day * 86_400 + Double($0) * 0.001), bid: Int64($0), ask: Int64($0) + 1) }
    }

    /// Writes `n` quotes in blocks of 100 to one partition's open log and returns the log's path.
    func writeLog(_ dir: String, quotes n: Int) throws -> String {
        let w = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100)
        for e in quotes(n) { try w.append(e) }
        try w.close()
        return dir + "/2026-01-05/MD.XNAS/" + Layout.logName(1)
    }

    @Test func aTornLogIsCutToItsLastWholeBlockAndWritingContinues() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let log = try writeLog(dir, quotes: 1000)
        let whole = try Data(contentsOf: URL(fileURLWithPath: log))
        let blockBytes = AppendLog.headerSize + 24 + 100 * 64    // the first block also defines the subject (24 bytes)
        let edges = [0, blockBytes - 1, blockBytes, blockBytes + 1, blockBytes + AppendLog.headerSize + 100 * 64, whole.count]
        // Fourteen random cuts besides the edges, seeded (TICKWIRE_TEST_SEED repeats a run); the seed is in every failure.
        let seed = ProcessInfo.processInfo.environment["TICKWIRE_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var state = seed
        func next() -> Int { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return Int(state >> 33) }
        for cut in edges + (0..<14).map({ _ in next() % whole.count }) {
            try whole.prefix(cut).write(to: URL(fileURLWithPath: log))
            let expected = cut < blockBytes ? 0 : 100 + (cut - blockBytes) / (AppendLog.headerSize + 100 * 64) * 100
            #expect(try read(dir).count == expected, "seed \(seed): cut at \(cut)")
            // A writer reopening the partition cuts the tail and appends after the last whole block.
            let w2 = try StoreWriter(directory: dir, subjects: ev.table, blockEvents: 100)
            for e in quotes(10, from: 5000) { try w2.append(e) }
            try w2.close()
            let wholeBlocks = cut < blockBytes ? 0 : blockBytes + (cut - blockBytes) / (AppendLog.headerSize + 100 * 64) * (AppendLog.headerSize + 100 * 64)
            #expect(w2.tornBytesCut == UInt64(cut - wholeBlocks), "seed \(seed): cut at \(cut)")
            #expect(try read(dir).count == expected + 10, "seed \(seed): cut at \(cut)")
        }
    }

    /// A reader beside a writer that cuts its log back (as the daemon's store writer cuts a block whose write failed)
    /// and writes it again: the reader sees a whole prefix of the log's blocks every time and never faults. Reading
    /// the log through a mapping, a cut under the reader's pages killed it with SIGBUS (this test then crashes).
    @Test func aReaderBesideAWriterCuttingItsLogBackSeesWholeBlocksAndNeverFaults() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let log = try writeLog(dir, quotes: 20_000)
        let whole = try [UInt8](Data(contentsOf: URL(fileURLWithPath: log)))
        let blockBytes = AppendLog.headerSize + 100 * 64, firstBlock = blockBytes + 24   // the first defines the subject
        let half = firstBlock + 99 * blockBytes   // 100 whole blocks: 10,000 events
        let fd = open(log, O_WRONLY)
        #expect(fd >= 0)
        let stop = Atomic(false)
        let cutter = Thread {
            while !stop.load(ordering: .relaxed) {
                _ = ftruncate(fd, off_t(half))
                _ = whole[half...].withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(half)) }
            }
        }
        cutter.start()
        let end = Date().addingTimeInterval(1.5)
        var reads = 0
        while Date() < end {
            let n = try read(dir).count
            #expect(n >= 10_000 && n <= 20_000 && n % 100 == 0, "read \(n) events")
            reads += 1
        }
        stop.store(true, ordering: .relaxed)
        while !cutter.isFinished { usleep(1_000) }
        close(fd)
        #expect(reads > 10)
    }

    /// With nothing valid after it, a damaged block is a torn tail (DamageTests: damage before intact blocks).
    @Test func aFlippedByteInTheOnlyBlockIsATornTail() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write(quotes(1000), to: dir, seal: false)
        let log = dir + "/2026-01-05/MD.XNAS/" + Layout.logName(1)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: log))
        let contents = bytes.withUnsafeBytes { AppendLog.read($0) }
        #expect(contents.events.count == 1000 && contents.tornBytes == 0)
        bytes[bytes.count - 100] ^= 0x40
        let damaged = bytes.withUnsafeBytes { AppendLog.read($0) }
        #expect(damaged.events.isEmpty)       // one block of 1,000 events
        #expect(damaged.tornReason == "a block checksum mismatch")
    }

    @Test func aDamagedSealedFileIsRefusedNamingTheFile() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write(quotes(5000), to: dir)
        let seg = dir + "/2026-01-05/MD.XNAS/" + Layout.segmentName(1)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: seg + "/a"))
        bytes[bytes.count / 2] ^= 1
        try bytes.write(to: URL(fileURLWithPath: seg + "/a"))
        #expect {
            try read(dir)
        } throws: { error in
            guard case StoreError.corrupt(let path, _, let reason) = error else { return false }
            return path.hasSuffix("/a") && reason == "checksum mismatch"
        }
    }

    @Test func leftoversOfACrashedSealAreRemovedAndTheDataIsIntact() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write(quotes(3000), to: dir)
        try ev.write(quotes(500, from: 3000), to: dir, seal: false)
        let part = dir + "/2026-01-05/MD.XNAS"
        // As if a seal of generation 2 died half way through writing its files.
        try FileManager.default.createDirectory(atPath: part + "/" + Layout.segmentName(2) + ".tmp", withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: part + "/" + Layout.segmentName(2) + ".tmp/a"))
        #expect(try read(dir).count == 3500)
        try ev.write([], to: dir)
        #expect(FS.list(part) == [Layout.segmentName(2)])
        #expect(try read(dir).count == 3500)
    }

    /// A child process writes and seals day after day and is killed with SIGKILL at a random moment; every
    /// partition it sealed reads back whole, and the one it was writing reads back as whole blocks.
    @Test func aWriterKilledMidWriteNeverCorruptsASealedPartition() async throws {
        let dir = "/tmp/tickwire-store-tests/sigkill-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        await #expect(processExitsWith: .signal(SIGKILL)) {
            let dir = "/tmp/tickwire-store-tests/sigkill-\(getppid())"
            let table = SubjectTable()
            let id = table.intern(text: "MD.XNAS.AAPL.QUOTE")
            let w = try! StoreWriter(directory: dir, subjects: table, blockEvents: 512)
            let killer = Thread {
                usleep(UInt32.random(in: 100_000...400_000))
                kill(getpid(), SIGKILL)
            }
            killer.start()
            for day in 0..<10_000 {
                for i in 0..<20_000 {
                    let at = Nanos(sessionOpen.rawValue + Int64(day) * Nanos.perDay + Int64(i) * 1_000_000)
                    try! w.append(.quote(id, bid: Price(e8: Int64(i)), bidSize: Quantity(e8: 1), ask: Price(e8: Int64(i) + 1), askSize: Quantity(e8: 1), eventTime: at, knownTime: at))
                }
                try! w.flush()
                try! w.seal()
            }
        }
        defer { cleanUp(dir) }
        let reader = try StoreReader(directory: dir)
        let keys = reader.partitions
        #expect(!keys.isEmpty)
        for key in keys {
            let files = Layout.inspect(dir + "/" + key.relativePath)
            let q = try StoreQuery(subjects: SubjectPattern(">"), from: Nanos(key.day * Nanos.perDay), to: Nanos((key.day + 1) * Nanos.perDay))
            var n = 0
            try reader.scan(q) { n += $0.count }
            if files.sealedGeneration != nil && files.liveLogs.isEmpty {
                #expect(n == 20_000, "sealed \(key)")
            } else {
                #expect(n % 512 == 0 || n == 20_000, "open \(key): \(n) events")
            }
        }
        // A writer recovers the open partition and seals it.
        let w = try StoreWriter(directory: dir, subjects: SubjectTable())
        try w.seal()
        #expect(keys.allSatisfy { Layout.inspect(dir + "/" + $0.relativePath).liveLogs.isEmpty })
    }
}

@Test func aSecondWriterOnTheSameStoreIsRefusedUntilTheFirstCloses() throws {
    let dir = scratchDirectory(); defer { cleanUp(dir) }
    let first = try StoreWriter(directory: dir, subjects: SubjectTable())
    #expect(throws: StoreError.self) { try StoreWriter(directory: dir, subjects: SubjectTable()) }
    try first.close()
    _ = try StoreWriter(directory: dir, subjects: SubjectTable())
}
