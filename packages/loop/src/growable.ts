/** Typed-array columns that grow by doubling: millions of ratings without an object per rating. */
export class GrowableColumns {
  item = new Int32Array(1024);
  rater = new Int32Array(1024);
  value = new Float64Array(1024);
  weight = new Float64Array(1024);
  isThumbs = new Uint8Array(1024);
  length = 0;

  push(item: number, rater: number, value: number, weight: number, isThumbs: boolean): void {
    if (this.length === this.item.length) this.grow();
    const k = this.length++;
    this.item[k] = item;
    this.rater[k] = rater;
    this.value[k] = value;
    this.weight[k] = weight;
    this.isThumbs[k] = isThumbs ? 1 : 0;
  }

  private grow(): void {
    const n = this.item.length * 2;
    const copy = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.item = copy(this.item, (m) => new Int32Array(m));
    this.rater = copy(this.rater, (m) => new Int32Array(m));
    this.value = copy(this.value, (m) => new Float64Array(m));
    this.weight = copy(this.weight, (m) => new Float64Array(m));
    this.isThumbs = copy(this.isThumbs, (m) => new Uint8Array(m));
  }

  trimmed() {
    return {
      item: this.item.subarray(0, this.length),
      rater: this.rater.subarray(0, this.length),
      value: this.value.subarray(0, this.length),
      weight: this.weight.subarray(0, this.length),
      isThumbs: this.isThumbs.subarray(0, this.length),
    };
  }
}

/**
 * Dense integer ids for strings, in first-seen order. Ids that arrive in increasing order (the
 * store reads ratings in interaction order) need no map: a larger id than the last is new, and one
 * seen before is found by binary search. Ids that arrive out of order after that go to a map of
 * their own, so a kept index of millions of sorted ids that meets a few new ones (an incremental
 * recalibration's new items) maps only those instead of building a map of every id.
 */
export class IdIndex {
  readonly ids: string[] = [];
  /** ids[0, sorted) arrived in increasing order. */
  private sorted = 0;
  /** The ids after them, by id. */
  private tail: Map<string, number> | null = null;
  private last = '';
  private lastIndex = -1;

  of(id: string): number {
    if (this.lastIndex >= 0 && id === this.last) return this.lastIndex;
    if (this.tail === null && (this.sorted === 0 || id > this.ids[this.sorted - 1]!)) {
      this.sorted++;
      return this.remember(id, this.add(id));
    }
    let i = this.find(id);
    if (i === undefined) {
      i = this.add(id);
      this.tail ??= new Map();
      this.tail.set(id, i);
    }
    return this.remember(id, i);
  }

  /** The index of an id seen before, or undefined (adds nothing). */
  find(id: string): number | undefined {
    let lo = 0;
    let hi = this.sorted - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = this.ids[mid]!;
      if (x === id) return mid;
      if (x < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return this.tail?.get(id);
  }

  private add(id: string): number {
    this.ids.push(id);
    return this.ids.length - 1;
  }

  private remember(id: string, i: number): number {
    this.last = id;
    this.lastIndex = i;
    return i;
  }
}
