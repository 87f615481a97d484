#include "weight_copies.h"

#include "compat.h"
#include "env_switch.h"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace roformer::weight_copies {

namespace {

using WeakTensor = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

struct Entry {
  WeakTensor weight;  // weakly: the copy must not keep a freed weight's address taken
  torch::Tensor copy;
  int64_t version;  // the weight's version when the copy was made or last rewritten
};

std::mutex mutex;
std::unordered_map<const c10::TensorImpl*, Entry> entries;
size_t pruned_at = 0;  // the number of entries after the last pruning

bool enabled() {
  static const bool on = switched_on("ROFORMER_WEIGHT_COPIES");
  return on;
}

bool eligible(const torch::Tensor& w) {
  return w.defined() && (w.is_cpu() || w.is_cuda()) && w.scalar_type() == torch::kFloat;
}

int64_t version_of(const torch::Tensor& w) { return static_cast<int64_t>(w._version()); }

// The entry of w itself (not of a freed tensor that had its address), or null. Under the mutex.
Entry* find(const torch::Tensor& w) {
  const auto it = entries.find(w.unsafeGetTensorImpl());
  if (it == entries.end()) return nullptr;
  if (it->second.weight.lock().get() != w.unsafeGetTensorImpl()) {
    entries.erase(it);
    return nullptr;
  }
  return &it->second;
}

// The entry whose weight is w, or whose weight holds w as a contiguous block of its elements
// (packed_qkv.h's query, key and value rows of the packed weight, which the optimiser updates
// one by one), with w's first element's index in it. Under the mutex.
std::pair<Entry*, int64_t> find_holding(const torch::Tensor& w) {
  if (Entry* entry = find(w)) return {entry, 0};
  if (!w.is_contiguous()) return {nullptr, 0};
  for (auto& [impl, entry] : entries) {
    const auto weight = entry.weight.lock();
    if (!weight || !weight->is_contiguous() || !weight->storage().is_alias_of(w.storage())) continue;
    const int64_t offset = w.storage_offset() - weight->storage_offset();
    if (offset >= 0 && offset + w.numel() <= weight->numel()) return {&entry, offset};
  }
  return {nullptr, 0};
}

// Drops the entries of freed weights. Under the mutex.
void prune() {
  for (auto it = entries.begin(); it != entries.end();) {
    it = it->second.weight.expired() ? entries.erase(it) : std::next(it);
  }
  pruned_at = entries.size();
}

// The live weights on `device` with their entries (all, or the stale ones). Under the mutex.
struct OnDevice {
  std::vector<torch::Tensor> weights, copies;
  std::vector<Entry*> entries;
};
OnDevice on_device(const torch::Device& device, bool stale_only) {
  OnDevice out;
  for (auto& [impl, entry] : entries) {
    auto impl_ptr = entry.weight.lock();
    if (!impl_ptr) continue;
    torch::Tensor weight(std::move(impl_ptr));
    if (weight.device() != device || weight.sizes() != entry.copy.sizes()) continue;
    if (stale_only && entry.version == version_of(weight)) continue;
    out.weights.push_back(weight);
    out.copies.push_back(entry.copy);
    out.entries.push_back(&entry);
  }
  return out;
}

// Copies the weights into their copies and marks them current. Under the mutex.
void rewrite(OnDevice& found) {
  if (found.weights.empty()) return;
  torch::NoGradGuard no_grad;
  compat::foreach_copy_(found.copies, found.weights);
  for (size_t i = 0; i < found.entries.size(); ++i) found.entries[i]->version = version_of(found.weights[i]);
}

}  // namespace

torch::Tensor cast(const torch::Tensor& w, torch::ScalarType dtype) {
  if (!enabled() || !eligible(w)) return w.to(dtype);
  std::lock_guard<std::mutex> lock(mutex);
  if (Entry* entry = find(w); entry != nullptr && entry->copy.scalar_type() == dtype && entry->copy.sizes() == w.sizes()) {
    if (entry->version != version_of(w)) {
      // Stale: cast again into the copy's own memory, unless a pending backward still holds it
      // (it saved the copy for its products; it must keep the values it used).
      if (entry->copy.storage().use_count() == 1) {
        entry->copy.copy_(w);
      } else {
        entry->copy = w.to(dtype).detach();
      }
      entry->version = version_of(w);
    }
    return entry->copy.detach();  // a tensor of its own: autograd sets its history on what it returns
  }
  if (entries.size() >= 2 * pruned_at + 16) prune();  // whenever the map has doubled since
  auto copy = w.to(dtype).detach();
  entries.insert_or_assign(w.unsafeGetTensorImpl(), Entry{WeakTensor(w.getIntrusivePtr()), copy, version_of(w)});
  return copy.detach();
}

void drop_freed() {
  std::lock_guard<std::mutex> lock(mutex);
  prune();
}

torch::Tensor to_rewrite(const torch::Tensor& w) {
  if (!enabled() || !eligible(w) || !w.is_cpu()) return {};
  std::lock_guard<std::mutex> lock(mutex);
  const auto [entry, offset] = find_holding(w);
  if (entry == nullptr) return {};
  const auto& copy = entry->copy;
  if (copy.scalar_type() != torch::kBFloat16 || !copy.is_contiguous()) return {};
  // the copy's elements at w's place in its weight, in w's shape
  return copy.reshape({-1}).narrow(0, offset, w.numel()).view(w.sizes());
}

void written(const torch::Tensor& w, const torch::Tensor& rewritten_copy) {
  torch::autograd::impl::bump_version(w);
  std::lock_guard<std::mutex> lock(mutex);
  const auto [entry, offset] = find_holding(w);
  if (entry == nullptr) return;
  const auto weight = entry->weight.lock();
  // a block of a weight: the weight changed too (its version counter is the block's, as a view's
  // is; bumped here as well so that nothing rests on that)
  if (weight.get() != w.unsafeGetTensorImpl()) weight->bump_version();
  if (rewritten_copy.defined() && entry->copy.storage().is_alias_of(rewritten_copy.storage())) {
    entry->version = static_cast<int64_t>(weight->version_counter().current_version());
  }
}

void refresh(const torch::Device& device) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = on_device(device, /*stale_only=*/false);
  rewrite(found);
}

void refresh_stale(const torch::Device& device) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = on_device(device, /*stale_only=*/true);
  rewrite(found);
}

std::vector<const void*> addresses(const torch::Device& device) {
  std::vector<const void*> out;
  if (!enabled()) return out;
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [impl, entry] : entries) {
    if (entry.copy.device() == device && !entry.weight.expired()) out.push_back(entry.copy.data_ptr());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace roformer::weight_copies
