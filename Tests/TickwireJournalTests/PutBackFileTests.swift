import Foundation
import Testing
import TickwireCore
@testable import TickwireJournal

/// `journal/putback/`: the trades a rollback cut, kept until they are back in the log.
@Suite(.timeLimit(.minutes(5))) struct PutBackFileTests {
    static let messages: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 0xAB, count: 700)]

    @Test func whatIsWrittenIsReadBackUntilSettled() throws {
        let dir = TempDir("putback")
        let first = try PutBackFile.write(journalDirectory: dir.path, messages: Self.messages)
        let second = try PutBackFile.write(journalDirectory: dir.path, messages: [[9]])
        var pending = try PutBackFile.pending(journalDirectory: dir.path)
        #expect(pending.files.map(\.name) == [first, second])
        #expect(pending.files.first?.messages == Self.messages)
        #expect(pending.damaged.isEmpty)
        try PutBackFile.settle(journalDirectory: dir.path, name: first)
        pending = try PutBackFile.pending(journalDirectory: dir.path)
        #expect(pending.files.map(\.name) == [second])
        // Nothing deleted: the settled file stays, renamed.
        #expect(FileManager.default.fileExists(atPath: dir.path + "/putback/\(first).settled"))
    }

    @Test func noFolderIsNothingPending() throws {
        let dir = TempDir("putback")
        let pending = try PutBackFile.pending(journalDirectory: dir.path)
        #expect(pending.files.isEmpty && pending.damaged.isEmpty)
    }

    /// Every cut of the file and every flipped byte is found (CRC32C, lengths) and named, never read as messages.
    @Test func aDamagedOrCutFileIsNamedNotRead() throws {
        let dir = TempDir("putback")
        let name = try PutBackFile.write(journalDirectory: dir.path, messages: Self.messages)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.path + "/putback/" + name)))
        for cut in 0..<bytes.count { #expect(PutBackFile.parse(Array(bytes[..<cut])) == nil, "cut at \(cut)") }
        for at in bytes.indices {
            var damaged = bytes
            damaged[at] ^= 0x10
            #expect(PutBackFile.parse(damaged) == nil, "byte \(at) flipped")
        }
        var damaged = bytes
        damaged[20] ^= 1
        try Data(damaged).write(to: URL(fileURLWithPath: dir.path + "/putback/" + name))
        let pending = try PutBackFile.pending(journalDirectory: dir.path)
        #expect(pending.files.isEmpty && pending.damaged == [name])
    }
}
