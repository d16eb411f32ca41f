// Pod addresses of one node: `<base>.2` to `.254` (`<base>.1` is the node itself). The pod's
// network namespace gets the address (pod-network.ts); on a loopback prefix (127/8) it can be
// bound on the host as is. Allocation goes round-robin so a freed address is not reused at once
// (a client of a deleted pod must not reach its successor by accident).
export class IpPool {
  private readonly used = new Set<number>();
  private cursor = 2;

  constructor(private readonly base: string) {}

  allocate(): string {
    for (let i = 0; i < 253; i++) {
      const host = this.cursor;
      this.cursor = this.cursor >= 254 ? 2 : this.cursor + 1;
      if (!this.used.has(host)) {
        this.used.add(host);
        return `${this.base}.${host}`;
      }
    }
    throw new Error(`no free pod address left in ${this.base}.0/24`);
  }

  /** Marks an address as used (a pod that already had it before the agent restarted). */
  claim(ip: string): boolean {
    if (!ip.startsWith(`${this.base}.`)) return false;
    const host = Number(ip.slice(this.base.length + 1));
    if (!(host >= 2 && host <= 254) || this.used.has(host)) return false;
    this.used.add(host);
    return true;
  }

  release(ip: string): void {
    if (ip.startsWith(`${this.base}.`)) this.used.delete(Number(ip.slice(this.base.length + 1)));
  }
}
