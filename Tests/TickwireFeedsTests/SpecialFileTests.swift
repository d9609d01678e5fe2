import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// Empty files, zeros, FIFOs and devices are errors that say what the file is, never a quiet 0 messages.
@Suite(.timeLimit(.minutes(5))) struct EmptyAndSpecialFileTests {
    let date = FeedOptions(date: try! TradingDate(parsing: "2019-12-30"))

    @Test func emptyITCHFileIsAnError() throws {
        let path = Fixture.scratch("empty.itch50", [])
        for policy in ErrorPolicy.allCases {
            var options = date; options.errorPolicy = policy
            #expect(throws: FeedInputError("no ITCH messages in '\(path)': the file is empty")) {
                try collect(try ITCHFileSource(path: path, options: options))
            }
        }
    }

    /// A file of zeros is zero-length frames: the first stops the run; skipping counts every one and still fails.
    @Test func zerosAreCountedZeroLengthFramesAndFail() throws {
        let path = Fixture.scratch("zeros.itch50", [UInt8](repeating: 0, count: 4096))
        #expect(throws: ITCHError(offset: 0, problem: .zeroLengthPrefix)) { try collect(try ITCHFileSource(path: path, options: date)) }
        var options = date; options.errorPolicy = .skip
        let skipping = try ITCHFileSource(path: path, options: options)
        let error = try #require(throws: FeedInputError.self) { try collect(skipping) }
        #expect(error.message.hasPrefix("no ITCH messages in '\(path)': 4096 bytes"))
        #expect(counter(skipping, "errors.zero_length_prefix") == 2048 && counter(skipping, "skipped_bytes") == 4096)
    }

    /// A FIFO without a writer used to block `open` forever; now it is refused at once, as is a device.
    @Test func fifoAndDevicesAreRefusedNotWaitedOn() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tickwire-fifo-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("feed.itch50").path
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: FeedConfigError("'\(fifo)' is a FIFO (named pipe): captures are read whole from regular files; save the stream to a file first")) {
            try collect(try ITCHFileSource(path: fifo, options: date))
        }
        #expect(throws: FeedConfigError("'/dev/zero' is a character device: captures are read whole from regular files; save the stream to a file first")) {
            try collect(try ITCHFileSource(path: "/dev/zero", options: date))
        }
        #expect(throws: FeedConfigError.self) { try collect(TardisCSVSource(path: fifo, kind: .quotes)) }
    }

    @Test func emptyLOBSTERFileIsAnError() throws {
        let path = Fixture.scratch("AAPL_2012-06-21_34200000_57600000_message_10.csv", [])
        #expect(throws: FeedInputError("no LOBSTER rows in '\(path)': the file is empty")) { try collect(try LOBSTERSource(path: path)) }
    }

    /// The hint names the real ways to give a date: `run` has no --date, it reads [feeds] date.
    @Test func missingDateNamesEveryWayToGiveOne() {
        #expect(throws: FeedConfigError("no trading date for 'capture.itch50': name it like 12302019.NASDAQ_ITCH50, or \(FeedOptions.howToSetDate)")) {
            try ITCHFileSource(path: "capture.itch50")
        }
        #expect(FeedOptions.howToSetDate.contains("--date YYYY-MM-DD (tickwire decode, tickwire import)"))
        #expect(FeedOptions.howToSetDate.contains("date = \"YYYY-MM-DD\" under [feeds]"))
    }
}
