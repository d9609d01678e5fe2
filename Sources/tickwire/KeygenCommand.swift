import ArgumentParser
import TickwireDaemon

/// `tickwire keygen`: make a CURVE key pair for a trader (or a server).
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Make a CURVE key pair (Z85) for a trader.",
        discussion: """
        Without --out or --data, prints the key file to stdout. With --data DIR, writes DIR/keys/traders/NAME.key
        (mode 0600); the daemon admits every key there at its next start. Give a remote trader the .key file,
        and put only the public line in the daemon's config or a NAME.pub file.
        """)

    @Option(help: "The trader's name (the identity the daemon records with each trade).") var name = "trader"
    @Option(help: "Write the key file here (mode 0600).") var out: String?
    @Option(help: "Write the key into this data directory's keys/traders/.") var data: String?

    func run() throws {
        let pair = try CurveKeyPair.generate(name: name)
        if let data {
            _ = try KeyStore.loadOrCreate(data: data, log: { _ in })   // makes keys/ (and a server key) if missing
            let path = KeyStore.tradersDirectory(data) + "/\(name).key"
            try pair.write(to: path)
            print("wrote \(path) (public key \(pair.publicKey))")
        } else if let out {
            try pair.write(to: out)
            print("wrote \(out) (public key \(pair.publicKey))")
        } else {
            print(pair.fileText, terminator: "")
        }
    }
}
