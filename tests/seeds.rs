//! The curl examples from the READMEs of the Flask + nsjail services pyexec
//! supersedes: the same requests give the answers their users expect.

mod common;

use common::Service;
use serde_json::json;

#[tokio::test]
async fn sum_example() {
    let service = Service::start(&[]).await;
    let body = service.ok("def main():\n    return {\"sum\": 2 + 2}").await;
    assert_eq!(body["result"], json!({"sum": 4}));
}

#[tokio::test]
async fn pandas_and_numpy_example_prints_and_returns() {
    let service = Service::start(&[]).await;
    let script = "import pandas as pd\nimport numpy as np\n\ndef main():\n    df = pd.DataFrame({\"a\": [1, 2, 3], \"b\": [4, 5, 6]})\n    arr = np.array([1.5, 2.5, 3.5])\n    print(\"Processing data...\")\n    return {\"sum\": int(df[\"a\"].sum()), \"mean\": float(arr.mean())}\n";
    let body = service.ok(script).await;
    assert_eq!(body["result"], json!({"sum": 6, "mean": 2.5}));
    assert_eq!(body["stdout"], "Processing data...\n");
}

#[tokio::test]
async fn main_guard_and_json_dumps_example() {
    let service = Service::start(&[]).await;
    let script = "import pandas as pd\nimport json\n\ndef main():\n    data = {'Name': ['Alice', 'Bob', 'Charlie'], 'Age': [25, 30, 35], 'Score': [85, 90, 95]}\n    df = pd.DataFrame(data)\n    summary = df[['Age','Score']].agg(['mean','sum']).to_dict()\n    print('called')\n    return json.dumps({\"data\": df.to_dict(orient='list'), \"summary\": summary}, indent=2)\n\nif __name__ == \"__main__\":\n    main()";
    let body = service.ok(script).await;
    assert_eq!(body["stdout"], "called\n", "main() runs once: the __main__ guard does not fire");
    let text = body["result"].as_str().expect("a str result stays a string");
    let parsed: serde_json::Value = serde_json::from_str(text).expect("the string holds JSON");
    assert_eq!(parsed["data"]["Name"], json!(["Alice", "Bob", "Charlie"]));
    assert_eq!(parsed["summary"]["Age"], json!({"mean": 30.0, "sum": 90.0}));
    assert_eq!(parsed["summary"]["Score"]["sum"], json!(270.0));
}

#[tokio::test]
async fn numpy_random_differs_between_runs() {
    let service = Service::start(&[]).await;
    let script = "import numpy as np\ndef main():\n    return np.random.randn(100).tolist()";
    let first = service.ok(script).await["result"].clone();
    let second = service.ok(script).await["result"].clone();
    assert_eq!(first.as_array().expect("list").len(), 100);
    assert_ne!(first, second, "every run must reseed numpy's global RNG");
}

#[tokio::test]
async fn name_is_not_main() {
    let service = Service::start(&[]).await;
    let body = service.ok("def main():\n    return __name__").await;
    assert_ne!(body["result"], "__main__");
}
